"""ModelForge web app: `python app.py [--host H] [--port P] [--share] [--auth user:password] [--root-path /x]`."""

from __future__ import annotations

import argparse
import os


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the ModelForge web app.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="create a public Gradio share link (use --auth)")
    parser.add_argument("--auth", default=os.environ.get("MODELFORGE_AUTH"), help="user:password for the login page")
    parser.add_argument("--root-path", default=os.environ.get("GRADIO_ROOT_PATH"), help="when served behind a proxy")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from modelforge.engine import Engine
    from modelforge.errors import ModelForgeError
    from modelforge.ui import build_app

    auth = None
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            raise SystemExit("--auth / MODELFORGE_AUTH must look like user:password")
        auth = (user, password)
    if args.share and auth is None:
        print("warning: --share makes this app public; protect it with --auth user:password or MODELFORGE_AUTH")
    try:
        engine = Engine.from_env()
    except ModelForgeError as exc:  # e.g. DATABASE_URL names a server that is not reachable
        raise SystemExit(f"error: {exc}") from None
    engine.runner.start()
    app = build_app(engine)
    # quiet: Gradio's own hints name launch(share=True), not this app's --share
    app.queue(default_concurrency_limit=8).launch(
        server_name=args.host, server_port=args.port, share=args.share, auth=auth, root_path=args.root_path,
        quiet=True, prevent_thread_lock=True,
    )
    print(f"* ModelForge is running on {app.local_url}" + ("" if args.share else " (a public link: --share)"), flush=True)
    engine.start_demo_build()  # after the page is served, so the start-up is not slowed
    app.block_thread()


if __name__ == "__main__":
    main()
