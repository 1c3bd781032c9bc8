"""The controller: the kopf adapter and the API-server backend of the reconcile core."""
