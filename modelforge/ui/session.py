"""The signed-in user of each event: tabs write handlers as `handler(engine, account, *inputs)` and bind
`as_user(engine, handler)`, so no handler can forget whose jobs and datasets it may touch."""

import inspect
from functools import wraps

import gradio as gr

from modelforge.accounts import LOCAL, Account

NOT_SIGNED_IN = "Sign in first (the Sign in with Hugging Face button at the top of the page)."


def account_of(engine, request: gr.Request | None, profile: gr.OAuthProfile | None) -> Account:
    """Who sent the event: the Hugging Face OAuth profile on a Space, else the name Gradio's login page signed in,
    else (no sign-in configured) the local user."""
    if engine.sign_in is None:
        return LOCAL
    if profile is not None:
        return engine.sign_in.account(profile.username)
    if request is not None and request.username:
        return engine.sign_in.account(request.username)
    raise gr.Error(NOT_SIGNED_IN, print_exception=False)


def as_user(engine, handler):
    """`handler(engine, account, *inputs)` as a Gradio handler of `*inputs`, named in the API by the handler's own
    parameter names."""
    return _of_user(engine, handler, with_account=True)


def signed_in_only(engine, handler):
    """`handler(engine, *inputs)`, refused to an event of no one when users must sign in (OAuth leaves Gradio's
    routes open: its login button must be reachable)."""
    return _of_user(engine, handler, with_account=False)


def _of_user(engine, handler, with_account: bool):
    """Gradio passes each event's request and OAuth profile, found by the type annotations of the two parameters this
    adds (before a `*values` or `**values` parameter, as Gradio looks for them only among the named ones)."""
    parameters = list(inspect.signature(handler).parameters.values())[2 if with_account else 1:]
    variable = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    cut = next((i for i, p in enumerate(parameters) if p.kind in variable), len(parameters))
    extra = [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=annotation)
        for name, annotation in (("request", gr.Request), ("profile", gr.OAuthProfile | None))
    ]

    def call(args: tuple, kwargs: dict):
        account = account_of(engine, *args[cut:cut + 2])  # refuses an event of no one when users must sign in
        inputs = (*args[:cut], *args[cut + 2:])
        return handler(engine, account, *inputs, **kwargs) if with_account else handler(engine, *inputs, **kwargs)

    if inspect.isgeneratorfunction(handler):

        @wraps(handler)
        def bound(*args, **kwargs):
            yield from call(args, kwargs)
    else:

        @wraps(handler)
        def bound(*args, **kwargs):
            return call(args, kwargs)

    del bound.__wrapped__  # Gradio reads the signature and annotations below, not the handler's
    bound.__signature__ = inspect.Signature(parameters[:cut] + extra + parameters[cut:])
    bound.__annotations__ = {"request": gr.Request, "profile": gr.OAuthProfile | None}
    return bound
