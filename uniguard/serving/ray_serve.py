"""`uniguard serve --address`: the same app as Ray Serve replicas, each with its own guard and batcher."""

from __future__ import annotations

import time

from uniguard.serving.run import build_app, check_settings
from uniguard.serving.service import ServeSettings


def start_on_ray(settings: ServeSettings, address: str, replicas: int = 1) -> str:
    """Deploy the app on Ray Serve with `replicas` copies and return its base URL (does not block)."""
    import ray
    from ray import serve as ray_serve

    check_settings(settings)
    ray.init(address=None if address == "local" else address, ignore_reinit_error=True, log_to_driver=False)
    ray_serve.start(http_options={"host": settings.host, "port": settings.port})
    ray_serve.run(ray_deployment(settings, replicas), name="uniguard", route_prefix="/")
    return f"http://{settings.host}:{settings.port}"


def serve_on_ray(settings: ServeSettings, address: str, replicas: int = 1) -> None:
    """`uniguard serve --address`: deploy on Ray Serve, block until interrupted, then tear the deployment down."""
    from ray import serve as ray_serve

    url = start_on_ray(settings, address, replicas)
    print(f"uniguard: {replicas} Ray Serve replica(s) of {settings.model} at {url}; Ctrl-C stops them", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        ray_serve.shutdown()


def ray_deployment(settings: ServeSettings, replicas: int = 1):
    """A bound Ray Serve application: each replica loads the guard and builds its own app and batcher."""
    from ray import serve as ray_serve

    @ray_serve.deployment(num_replicas=replicas, ray_actor_options={"num_cpus": settings.threads or 1})
    @ray_serve.ingress()
    class GuardReplica:
        def __init__(self, replica_settings: ServeSettings):
            self.settings = replica_settings

        def __serve_build_asgi_app__(self):
            return build_app(self.settings)

    return GuardReplica.bind(settings)
