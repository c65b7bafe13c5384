"""Domain signals of change control, sent on commit for the apps above (the portal).

- ``change_implemented(sender=ChangeRequest, change=<ChangeRequest>)``: an approved change was
  implemented (its proposed release is now the product's released release).
"""

import django.dispatch

change_implemented = django.dispatch.Signal()
