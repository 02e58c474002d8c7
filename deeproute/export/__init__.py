"""Writers for routed nets: GDSII layout (`gds`) and the routes.json report (`routes_json`)."""
