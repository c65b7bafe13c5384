from django.http import HttpResponse


def catalog(request):  # placeholder, replaced by the portal pages
    return HttpResponse("")
