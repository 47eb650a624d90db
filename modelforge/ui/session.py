"""The signed-in user of each event: tabs write handlers as `handler(account, *inputs)` and bind `as_user(engine,
handler)`, so no handler can forget whose jobs and datasets it may touch."""

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
    """`handler(account, *inputs)` as a Gradio handler of `*inputs`; Gradio passes each event's request and OAuth
    profile, found by the type annotations of the two parameters this adds (before a `*values` parameter, as Gradio
    looks for them only among the named ones)."""
    parameters = list(inspect.signature(handler).parameters.values())[1:]
    cut = next((i for i, p in enumerate(parameters) if p.kind == inspect.Parameter.VAR_POSITIONAL), len(parameters))
    extra = [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=annotation)
        for name, annotation in (("request", gr.Request), ("profile", gr.OAuthProfile | None))
    ]

    def account_and_inputs(args: tuple) -> tuple:
        request, profile = args[cut:cut + 2]
        return account_of(engine, request, profile), *args[:cut], *args[cut + 2:]

    if inspect.isgeneratorfunction(handler):

        @wraps(handler)
        def bound(*args):
            yield from handler(*account_and_inputs(args))
    else:

        @wraps(handler)
        def bound(*args):
            return handler(*account_and_inputs(args))

    del bound.__wrapped__  # Gradio reads the signature and annotations below, not the handler's
    bound.__signature__ = inspect.Signature(parameters[:cut] + extra + parameters[cut:])
    bound.__annotations__ = {"request": gr.Request, "profile": gr.OAuthProfile | None}
    return bound


def signed_in_only(engine, handler):
    """`handler(*inputs)`, refused to an event of no one when users must sign in (OAuth leaves Gradio's routes open:
    its login button must be reachable)."""
    if inspect.isgeneratorfunction(handler):

        def passthrough(account, *inputs):
            yield from handler(*inputs)
    else:

        def passthrough(account, *inputs):
            return handler(*inputs)

    return as_user(engine, passthrough)
