"""The /dashboard blueprint, shared by the modules that add its views (login, dashboard)."""

from flask import Blueprint

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")
