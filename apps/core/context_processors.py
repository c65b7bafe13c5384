def navigation(request):
    """What the site layout needs on every page."""
    user = getattr(request, "user", None)
    if not user or not user.is_authenticated:
        return {}
    return {"nav_roles": sorted(user.roles())}
