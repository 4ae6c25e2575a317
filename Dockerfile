# A ShopStream worker image: the project installed from this checkout, run as the worker.
# docker-compose.yml builds it; every setting comes from SHOP_* variables (docs/configuration.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/shopstream
COPY . .
RUN pip install . \
    && useradd --system --home-dir /srv/shopstream shop \
    && mkdir -p /var/lib/shopstream \
    && chown shop /var/lib/shopstream
USER shop

# The app module is imported from this directory (the project runs from its checkout).
EXPOSE 6066
CMD ["faust", "-A", "app", "worker", "-l", "info"]
