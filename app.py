"""ModelForge web app: `python app.py [--host H] [--port P] [--share] [--auth user:password] [--root-path /x]`.

Users sign in with the accounts of the users file (`python -m modelforge user add NAME`), the --auth pair (an admin),
or, on a Space with `hf_oauth: true`, their Hugging Face account.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the ModelForge web app.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="create a public Gradio share link (needs accounts)")
    parser.add_argument("--insecure-share", action="store_true", help="allow --share with no sign-in at all")
    parser.add_argument(
        "--auth", default=os.environ.get("MODELFORGE_AUTH"), help="user:password of an admin account, beside the users file"
    )
    parser.add_argument("--root-path", default=os.environ.get("GRADIO_ROOT_PATH"), help="when served behind a proxy")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from modelforge.accounts import sign_in_for
    from modelforge.engine import Engine
    from modelforge.errors import ModelForgeError
    from modelforge.settings import Settings
    from modelforge.ui import build_app

    try:
        settings = Settings.from_env()
        sign_in = sign_in_for(settings.home, args.auth)
    except ModelForgeError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.share and sign_in is None and not args.insecure_share:
        print(
            "error: --share publishes this app to anyone who has the link, and no one would have to sign in. Add an "
            "account first (`python -m modelforge user add NAME --admin`) or pass --auth user:password; or pass "
            "--insecure-share to publish it open anyway.",
            file=sys.stderr,
        )
        raise SystemExit(2)
    try:
        engine = Engine.create(settings)
    except ModelForgeError as exc:  # e.g. DATABASE_URL names a server that is not reachable
        raise SystemExit(f"error: {exc}") from None
    engine.sign_in = sign_in
    engine.runner.start()
    app = build_app(engine)
    password_login = sign_in is not None and not sign_in.oauth
    # quiet: Gradio's own hints name launch(share=True), not this app's --share
    app.queue(default_concurrency_limit=8).launch(
        server_name=args.host, server_port=args.port, share=args.share, root_path=args.root_path,
        auth=sign_in.check if password_login else None, quiet=True, prevent_thread_lock=True,
    )
    print(f"* ModelForge is running on {app.local_url}" + ("" if args.share else " (a public link: --share)"), flush=True)
    engine.start_demo_build()  # after the page is served, so the start-up is not slowed
    app.block_thread()


if __name__ == "__main__":
    main()
