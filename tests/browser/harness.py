"""Helpers for the console's browser journeys (tests/browser/journeys.py).

Headless Debian Chromium (/usr/bin/chromium) driven by Playwright; every screen a journey
names is screenshotted and checked with axe-core. run.py calls configure() first, then each
journey; serious or critical axe violations are collected per screen and reported at the end.
"""

import contextlib
import re
from pathlib import Path

from playwright.sync_api import Browser, Page, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# How long one step (a click, a navigation, an expectation) may take before the journey fails.
TIMEOUT_MS = 10_000
FAILING_IMPACTS = ("serious", "critical")
expect.set_options(timeout=TIMEOUT_MS)

_axe_path: Path | None = None
_shots_dir: Path | None = None
# screen name -> [(rule id, help, first node's target)]
violations: dict[str, list[tuple[str, str, str]]] = {}
# every context new_page() made, closed by close_pages() after each journey
_contexts = []
# those of them with JavaScript off
_scriptless = []


def configure(axe: str, shots: str) -> None:
    """Where axe.min.js is, and the directory screenshots go to (created if missing)."""
    global _axe_path, _shots_dir
    _axe_path = Path(axe)
    if not _axe_path.is_file():
        raise SystemExit(f"axe-core not found at {_axe_path} (npm install axe-core)")
    _shots_dir = Path(shots)
    _shots_dir.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def browser():
    """A headless Chromium (Debian's, not a Playwright download)."""
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            yield b
        finally:
            b.close()


def new_page(browser: Browser, base: str | None, java_script_enabled: bool = True) -> Page:
    """A page in a fresh context (its own cookies), relative URLs resolved against `base`.

    bypass_csp=True is there ONLY so that axe-core can be injected: the console's
    Content-Security-Policy forbids inline script, and add_script_tag adds an inline one.
    So these tests do not check the CSP; tests/contract/console.rs checks the header.
    """
    context = browser.new_context(
        base_url=base,
        bypass_csp=True,
        java_script_enabled=java_script_enabled,
        viewport={"width": 1280, "height": 900},
    )
    context.set_default_timeout(TIMEOUT_MS)
    _contexts.append(context)
    if not java_script_enabled:
        _scriptless.append(context)
    return context.new_page()


def close_pages() -> None:
    _scriptless.clear()
    while _contexts:
        with contextlib.suppress(Exception):
            _contexts.pop().close()


def failure_shots(prefix: str) -> list[Path]:
    """Screenshots of every page still open (after a journey failed)."""
    taken = []
    for i, context in enumerate(_contexts):
        for j, page in enumerate(context.pages):
            with contextlib.suppress(Exception):
                taken.append(shot(page, f"{prefix}-failed-{i}-{j}"))
    return taken


def sign_in(page: Page, base: str, role: str, ods: str | None = None) -> None:
    """Signs in through the sandbox form: role practice, pcse or back-office (and a
    practice's ODS code); the server answers 303 to /console/."""
    page.goto(f"{base}/console/sign-in")
    page.get_by_label("Role").select_option(role)
    if ods is not None:
        page.get_by_label("Practice ODS code").fill(ods)
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Sign in").click()
    landed = navigation.value
    # the POST's own response: the redirect, if there was one, else the page it answered with
    posted = landed.request.redirected_from if landed else None
    answer = posted.response() if posted else landed
    status = answer.status if answer else None
    if status != 303 or page.url != f"{base}/console/":
        raise AssertionError(
            f"sign-in as {role}: expected 303 to {base}/console/, got {status} and "
            f"{page.url}: {page.locator('body').inner_text()[:500]}"
        )


def expect_text(page: Page, text: str) -> None:
    """The page shows `text` somewhere (waits up to TIMEOUT_MS)."""
    expect(page.locator("body")).to_contain_text(text)


def shot(page: Page, name: str) -> Path:
    """A full-page screenshot, <shots>/<name>.png."""
    path = _shots_dir / f"{_file_name(name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def check_axe(page: Page, name: str) -> None:
    """Runs axe-core on the page and records its serious and critical violations under `name`.

    axe needs timers, which do not run in a page without JavaScript; such a page is checked
    as a copy: its DOM served again at its own URL in a JavaScript page whose own scripts are
    blocked, so styles (and so colour contrast) are the same.
    """
    copy = _scriptless_copy(page) if page.context in _scriptless else None
    try:
        target = copy or page
        target.add_script_tag(path=str(_axe_path))
        found = target.evaluate(
            """async () => {
                const r = await axe.run(document);
                return r.violations.map(v => ({
                    id: v.id, impact: v.impact, help: v.help,
                    target: v.nodes.length ? JSON.stringify(v.nodes[0].target) : ""}));
            }"""
        )
    finally:
        if copy:
            _contexts.remove(copy.context)
            copy.context.close()
    bad = [(v["id"], v["help"], v["target"]) for v in found if v["impact"] in FAILING_IMPACTS]
    if bad:
        violations.setdefault(name, []).extend(bad)


def screen(page: Page, name: str) -> None:
    """A named screen: screenshot and accessibility check."""
    shot(page, name)
    check_axe(page, name)


def axe_report() -> list[str]:
    """One line per violation found so far, by screen."""
    return [
        f"{screen_name}: {rule} ({help_text}) at {target}"
        for screen_name, found in violations.items()
        for rule, help_text, target in found
    ]


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "screen"


def _scriptless_copy(page: Page) -> Page:
    html, url = page.content(), page.url

    def serve(route):
        if route.request.url == url and route.request.is_navigation_request():
            route.fulfill(status=200, content_type="text/html; charset=utf-8", body=html)
        elif route.request.resource_type == "script":
            route.abort()
        else:
            route.continue_()

    copy = new_page(page.context.browser, None)
    copy.set_viewport_size(page.viewport_size)
    copy.route("**/*", serve)
    copy.goto(url)
    return copy
