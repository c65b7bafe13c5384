from django.urls import path

from . import views_portfolio

urlpatterns = [
    path("portfolio/", views_portfolio.portfolio, name="portfolio"),
    path("portfolio/export.csv", views_portfolio.portfolio_export, name="portfolio_export"),
]
