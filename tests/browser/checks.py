"""What every main page must pass in the browser: axe-core finds no serious or critical violation,
every visible control is reached by Tab and shows a focus style, and a screenshot is kept."""

from __future__ import annotations

from playwright.sync_api import Page

from tests.browser.conftest import SCREENSHOTS, Profile

BLOCKING_IMPACTS = ("serious", "critical")

# Runs axe in the page. Evaluated as a function body through the DevTools protocol, so the page's
# strict CSP (no inline script, no eval) stays on and axe needs no <script> tag.
_AXE_RUN = """async () => {
  const result = await window.axe.run(document, {resultTypes: ["violations"]});
  return result.violations
    .filter((v) => %s.includes(v.impact))
    .map((v) => ({id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.slice(0, 6).map((n) => n.target.join(" ") + "  ->  " + n.failureSummary)}));
}"""

# Marks every control a keyboard user must reach and returns their descriptions.
_MARK_CONTROLS = """() => {
  const selector = 'a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), ' +
    'select:not([disabled]), textarea:not([disabled]), summary, [tabindex]:not([tabindex="-1"])';
  const shown = (el) => {
    if (!el.getClientRects().length) return false;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden" || style.display === "none") return false;
    return !el.closest("[hidden], [inert], details:not([open]) > :not(summary)");
  };
  const out = [];
  document.querySelectorAll(selector).forEach((el) => {
    if (!shown(el)) return;
    el.dataset.kb = String(out.length);
    const label = (el.getAttribute("aria-label") || el.textContent || el.name || el.id || "")
      .trim();
    out.push({id: el.dataset.kb, group: el.type === "radio" ? "radio:" + el.name : null,
      what: el.tagName.toLowerCase() + (el.type ? "[" + el.type + "]" : "") + " " +
        JSON.stringify(label.replace(/\\s+/g, " ").slice(0, 50))});
  });
  return out;
}"""

# Records each element that receives focus and whether it then shows a focus indicator (an
# outline or a ring), so a walk of many Tab presses needs one read at the end.
_RECORD_FOCUS = """() => {
  window.__focusWalk = [];
  document.addEventListener("focusin", (event) => {
    const el = event.target;
    const style = getComputedStyle(el);
    const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0;
    const ring = style.boxShadow && style.boxShadow !== "none";
    window.__focusWalk.push({id: el.dataset.kb || null, styled: Boolean(outline || ring),
      what: el.tagName.toLowerCase() + " " +
        JSON.stringify((el.textContent || el.name || "").trim().slice(0, 40))});
  });
  if (document.activeElement) document.activeElement.blur();
  window.scrollTo(0, 0);
}"""


def axe_violations(page: Page, axe_source: str) -> list[dict]:
    if not page.evaluate("() => Boolean(window.axe)"):
        page.evaluate("() => {\n" + axe_source + "\n}")
    return page.evaluate(_AXE_RUN % list(BLOCKING_IMPACTS))


def assert_accessible(page: Page, axe_source: str, name: str) -> None:
    violations = axe_violations(page, axe_source)
    report = "\n".join(
        f"  {v['impact']} {v['id']}: {v['help']}\n" + "\n".join(f"      {n}" for n in v["nodes"])
        for v in violations
    )
    assert not violations, f"axe-core on {name} ({page.url}):\n{report}"


def assert_keyboard_reachable(page: Page, name: str) -> None:
    """Tab from the top of the page: every visible control gets focus (a radio group once), and
    each one shows a focus style when it does."""
    controls = page.evaluate(_MARK_CONTROLS)
    assert controls, f"{name}: no controls found"
    page.evaluate(_RECORD_FOCUS)
    reached: set[str] = set()
    unstyled: list[str] = []
    # Date and time inputs take a Tab per part (hour, minute, AM/PM), hence the allowance; the
    # walk stops once focus comes back round to a control already reached.
    presses, wrapped, last = 0, False, None
    while presses < 4 * len(controls) + 10 and not wrapped:
        for _ in range(10):
            page.keyboard.press("Tab")
        presses += 10
        walk = page.evaluate("() => window.__focusWalk.splice(0)")
        for focused in walk:
            if focused["id"] is not None and focused["id"] == last:
                continue  # a part of the same date or time input
            last = focused["id"]
            if focused["id"] is not None:
                if focused["id"] in reached:
                    wrapped = True
                    break
                reached.add(focused["id"])
            if not focused["styled"]:
                unstyled.append(focused["what"])
    groups_reached = {c["group"] for c in controls if c["group"] and c["id"] in reached}
    missed = [
        c["what"]
        for c in controls
        if c["id"] not in reached and not (c["group"] and c["group"] in groups_reached)
    ]
    assert not missed, f"{name}: not reachable by Tab: {missed}"
    assert not unstyled, f"{name}: focused without a visible focus style: {unstyled}"


def screenshot(page: Page, name: str, profile: Profile) -> None:
    suffix = "" if profile.phone else "-desktop"
    page.evaluate("() => window.scrollTo(0, 0)")  # sticky and fixed bars where they belong
    page.screenshot(path=SCREENSHOTS / f"{name}{suffix}.png", full_page=True)
    if profile.phone:  # what the phone's screen shows first (the README's pictures)
        page.screenshot(path=SCREENSHOTS / f"{name}-screen.png")


class Audit:
    """Screenshot, axe and keyboard checks of each main page as the journey reaches it. Problems
    are collected, so one run reports every page's; the test asserts none at its end."""

    def __init__(self, profile: Profile, axe_source: str) -> None:
        self.profile = profile
        self.axe_source = axe_source
        self.problems: list[str] = []
        self.pages: list[str] = []

    def __call__(self, page: Page, name: str) -> None:
        page.wait_for_load_state("load")
        self.pages.append(name)
        screenshot(page, name, self.profile)
        for check in (
            lambda: assert_accessible(page, self.axe_source, name),
            lambda: assert_keyboard_reachable(page, name),
        ):
            try:
                check()
            except AssertionError as problem:
                self.problems.append(str(problem))

    def assert_clean(self) -> None:
        assert not self.problems, f"{len(self.problems)} problem(s):\n\n" + "\n\n".join(
            self.problems
        )
