"""Thin routes: they authenticate, validate, call the service and translate its errors."""
