"""The console's journeys in Chromium: what a GP practice, PCSE and the National Back Office do,
screen by screen, each screen screenshotted and checked by axe-core.

Each journey takes (browser, base) and raises on the first thing that is not as a user would
expect. The demo database (serve --demo) is the starting point; each journey uses patients of
its own so that the journeys do not depend on each other's order.
"""

import re

from harness import expect_text, new_page, screen, sign_in
from playwright.sync_api import expect

# Demo patients (src/demo.rs): index 10 and 11 are at different practices (Y11000, Y11001).
TARGET, SOURCE = "9991000119", "9991000127"
INFORMAL_DEATH = "9991000046"
SEVERAL_TELECOMS = "9991000070"


def case_id(page):
    m = re.search(r"/console/cases/([0-9a-f-]+)", page.url)
    assert m, page.url
    return m.group(1)


def sign_in_screens(browser, base):
    page = new_page(browser, base)
    page.goto(base + "/console/")
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    screen(page, "sign-in")
    # keyboard: the first Tab reaches the skip link, which moves focus to the content
    page.keyboard.press("Tab")
    expect(page.locator("a.skip")).to_be_focused()


def duplicate_journey(browser, base):
    """A practice reports a duplicate; PCSE asks for information; the practice answers; PCSE
    passes it on; the NBO compares the records, previews and makes the merge and completes the
    case; the practice sees what it must do next."""
    practice = new_page(browser, base)
    sign_in(practice, base, "practice", "Y11000")
    expect_text(practice, "My cases")
    screen(practice, "practice-my-cases")
    practice.get_by_role("navigation", name="Main").get_by_role("link", name="Report an incident").click()
    screen(practice, "practice-report-choose")
    practice.get_by_role("link", name="Duplicate NHS number").click()
    # NHS numbers are checked as they are typed: a wrong check digit is said at once
    practice.get_by_label("The patient's NHS number").fill("9991000110")
    expect(practice.locator("#f-patient-check")).to_contain_text("check digit")
    practice.get_by_label("The patient's NHS number").fill(TARGET)
    expect(practice.locator("#f-patient-check")).to_contain_text("born")
    practice.get_by_label("The patient's other NHS number").fill(SOURCE)
    expect(practice.locator("#f-other-check")).to_contain_text("born")
    practice.get_by_label("What is wrong").fill("The patient has two NHS numbers after re-registering")
    practice.get_by_label("Evidence (optional)").fill("Same name and birth date on both records")
    screen(practice, "practice-report-duplicate")
    practice.get_by_role("button", name="Send the report").click()
    case = case_id(practice)
    expect_text(practice, "New")
    screen(practice, "practice-case")

    pcse = new_page(browser, base)
    sign_in(pcse, base, "pcse")
    expect_text(pcse, "Inbox")
    expect(pcse.locator(f'a[href="/console/cases/{case}"]')).to_be_visible()
    screen(pcse, "pcse-inbox")
    pcse.locator(f'a[href="/console/cases/{case}"]').click()
    pcse.get_by_role("button", name="Receive the case").click()
    pcse.get_by_label("Your question to the practice").fill("Which address did the patient give when registering?")
    pcse.get_by_role("button", name="Ask the practice for information").click()
    expect_text(pcse, "Waiting for the practice")
    screen(pcse, "pcse-case-on-hold")

    practice.goto(base + "/console/")
    expect_text(practice, "unread message")
    practice.get_by_role("link", name="Read them").click()
    expect_text(practice, "Which address did the patient give")
    screen(practice, "practice-messages")
    practice.get_by_role("link", name="Answer on the case").first.click()
    practice.get_by_label("Your answer").fill("12 Acre Lane, Leeds, as on the second record")
    practice.get_by_role("button", name="Send the answer").click()
    expect_text(practice, "With PCSE")

    pcse.goto(f"{base}/console/cases/{case}")
    expect_text(pcse, "12 Acre Lane")
    pcse.get_by_role("button", name="Pass the case to the NBO").click()
    expect_text(pcse, "With the NBO")

    nbo = new_page(browser, base)
    sign_in(nbo, base, "back-office")
    expect_text(nbo, "Queue")
    expect_text(nbo, "overdue")
    screen(nbo, "nbo-queue")
    nbo.goto(f"{base}/console/cases/{case}")
    records = nbo.locator("table.records")
    expect(records).to_contain_text(TARGET)
    expect(records).to_contain_text(SOURCE)
    expect(records.locator("tr.differs").first).to_be_visible()
    screen(nbo, "nbo-case-compare")
    merge = nbo.locator("form#merge")
    merge.get_by_label(re.compile(f"Keep {TARGET}")).check()
    merge.get_by_label("Reason").fill("Duplicate registration confirmed by the practice")
    merge.get_by_role("button", name="Preview the merge").click()
    expect_text(nbo, "Nothing has changed yet")
    screen(nbo, "nbo-merge-preview")
    nbo.get_by_role("button", name="Merge the records").click()
    expect_text(nbo, "Corrections made")
    expect_text(nbo, "NBO working on it")
    nbo.get_by_label("Resolution").fill(f"The records were merged: the patient is known by NHS number {TARGET}")
    nbo.get_by_label("Follow-on actions for the practices").fill(
        f"Re-register the patient under NHS number {TARGET}\nMerge the two practice records"
    )
    nbo.get_by_role("button", name="Complete the case").click()
    expect_text(nbo, "Completed")
    screen(nbo, "nbo-case-completed")

    practice.goto(base + "/console/")
    expect_text(practice, f"Re-register the patient under NHS number {TARGET}")
    screen(practice, "practice-follow-on")
    # the other patient's practice is told too
    other = new_page(browser, base)
    sign_in(other, base, "practice", "Y11001")
    other.goto(base + "/console/messages")
    expect_text(other, "Outcome of a case")
    expect_text(other, "Merge the two practice records")


def pass_to_nbo(browser, base, case):
    pcse = new_page(browser, base)
    sign_in(pcse, base, "pcse")
    pcse.goto(f"{base}/console/cases/{case}")
    pcse.get_by_role("button", name="Receive the case").click()
    pcse.get_by_role("button", name="Pass the case to the NBO").click()
    expect_text(pcse, "With the NBO")


def report(browser, base, ods, kind, nhs, what):
    practice = new_page(browser, base)
    sign_in(practice, base, "practice", ods)
    practice.goto(f"{base}/console/cases/new?kind={kind}")
    practice.get_by_label("The patient's NHS number").fill(nhs)
    practice.get_by_label("What is wrong").fill(what)
    practice.get_by_role("button", name="Send the report").click()
    return practice, case_id(practice)


def death_status_journey(browser, base):
    """A patient wrongly recorded as dead: the NBO removes the death on the case."""
    practice, case = report(browser, base, "Y12345", "incorrect-death-status", INFORMAL_DEATH,
                            "The patient came to the surgery today; the record says they died")
    pass_to_nbo(browser, base, case)
    nbo = new_page(browser, base)
    sign_in(nbo, base, "back-office")
    nbo.goto(f"{base}/console/cases/{case}")
    expect(nbo.locator("table.records")).to_contain_text("Informal")
    form = nbo.locator("form#death")
    form.get_by_label("Reason").fill("Recorded against the wrong patient")
    form.get_by_role("button", name="Remove the death").click()
    expect_text(nbo, "Corrections made")
    expect(nbo.locator("form#death")).to_have_count(0)
    screen(nbo, "nbo-death-removed")
    nbo.get_by_label("Resolution").fill("The death was recorded in error and has been removed")
    nbo.get_by_label("Follow-on actions for the practices").fill("Reinstate the patient's record on the practice system")
    nbo.get_by_role("button", name="Complete the case").click()
    expect_text(nbo, "Completed")
    practice.goto(base + "/console/")
    expect_text(practice, "Reinstate the patient's record")


def sensitive_flag_journey(browser, base):
    """The patient asks for their address to be protected: the NBO sets the flag; afterwards
    PCSE and the practice see the record without its hidden fields."""
    practice, case = report(browser, base, "Y12345", "sensitive-flag", SEVERAL_TELECOMS,
                            "The patient has asked for their address to be protected")
    pass_to_nbo(browser, base, case)
    nbo = new_page(browser, base)
    sign_in(nbo, base, "back-office")
    nbo.goto(f"{base}/console/cases/{case}")
    form = nbo.locator("form#flag")
    form.get_by_label("Confidentiality").select_option("R")
    form.get_by_label("Reason").fill("At risk of harm")
    form.get_by_role("button", name="Set the flag").click()
    expect_text(nbo, "Corrections made")
    expect(nbo.locator("table.records")).to_contain_text("restricted")
    screen(nbo, "nbo-flag-set")
    nbo.get_by_label("Resolution").fill("The record is now restricted")
    nbo.get_by_label("Follow-on actions for the practices").fill("Do not disclose the patient's address or telephone number")
    nbo.get_by_role("button", name="Complete the case").click()
    expect_text(nbo, "Completed")
    practice.goto(base + "/console/")
    expect_text(practice, "Do not disclose")


def without_javascript(browser, base):
    """The core flow works with scripts off: the server checks the NHS number."""
    page = new_page(browser, base, java_script_enabled=False)
    sign_in(page, base, "practice", "Y12345")
    page.goto(base + "/console/cases/new?kind=incorrect-demographics")
    page.get_by_label("The patient's NHS number").fill("9991000004")
    page.get_by_label("What is wrong").fill("The birth date is wrong")
    page.get_by_role("button", name="Send the report").click()
    expect(page.get_by_role("alert")).to_contain_text("NHS number")
    screen(page, "practice-report-refused")
    page.get_by_label("The patient's NHS number").fill("9991000003")
    page.get_by_label("What is wrong").fill("The birth date is wrong")
    page.get_by_role("button", name="Send the report").click()
    expect_text(page, "Incorrect demographics case")


JOURNEYS = [
    sign_in_screens,
    duplicate_journey,
    death_status_journey,
    sensitive_flag_journey,
    without_javascript,
]
