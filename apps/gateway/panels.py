"""The product page's "Calls, last 7 days" section: calls, error rate, p95 latency and cost per
day, as four small server-drawn charts with their numbers.

The product page only renders panels for a product the user may see; the figures are that
product's calls (one query on PostgreSQL, two elsewhere: ``provider_call_daily_stats``).
"""

from urllib.parse import urlencode

from django.urls import reverse

from apps.catalog.panels import register_product_panel

from .charts import call_charts, day_long, fmt_cost, fmt_ms, fmt_percent
from .selectors import provider_call_daily_stats

DAYS = 7


@register_product_panel
def calls_panel(request, product, can_change: bool) -> dict:
    stats = provider_call_daily_stats(product=product, days=DAYS)
    rows = [
        {
            "day": day_long(d.day),
            "date": d.day,
            "calls": d.calls,
            "errors": d.errors,
            "error_rate": fmt_percent(d.error_rate) if d.error_rate is not None else "—",
            "p95": fmt_ms(d.p95_ms) if d.p95_ms is not None else "—",
            "cost": fmt_cost(d.cost) if d.calls else "—",
        }
        for d in stats.days
    ]
    return {
        "order": 30,
        "template": "gateway/partials/product_panel.html",
        "days": DAYS,
        "stats": stats,
        "charts": [] if stats.empty else call_charts(stats),
        "rows": rows,
        "calls_url": f"{reverse('call_list')}?{urlencode({'product': product.slug})}",
    }
