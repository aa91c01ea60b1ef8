"""Operations: running the service (serve), nginx's config (nginx), Gunicorn's settings and workers, the log report."""
