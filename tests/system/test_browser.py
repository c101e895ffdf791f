"""The review page in a real browser: headless Debian chromium driven by Selenium.

The server is a real `gitvault serve` subprocess on an ephemeral 127.0.0.1 port over the demo
vault (the legacy import, two agents and a merge, a kept conflict, a value holding markup).
Waits are WebDriverWait conditions, never sleeps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from .webtools import PERSON, SCRIPT, TOKEN, Server, browser, cli, demo, git, server

__all__ = ["browser", "demo", "server"]  # fixtures


def wait(driver: Any, seconds: float = 20) -> WebDriverWait[Any]:
    return WebDriverWait(driver, seconds)


def rows(driver: Any) -> list[Any]:
    return [
        r
        for r in driver.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")
        if "empty" not in (r.get_attribute("class") or "")
    ]


def open_page(driver: Any, url: str) -> None:
    driver.delete_all_cookies()
    driver.get(url)


def sign_in(driver: Any, s: Server) -> None:
    open_page(driver, s.url + "/login")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.ID, "sign-in").click()
    wait(driver).until(ec.url_contains("/conflicts"))


def test_the_timeline_shows_every_commit_of_the_demo_vault_newest_first(
    browser: Any, server: Server
) -> None:
    open_page(browser, server.url + "/timeline")
    commits = git(server.vault, "rev-list", "main").split()
    links = [r.find_elements(By.CSS_SELECTOR, "a.commit") for r in rows(browser)]
    shown = [a[0].get_attribute("href").rsplit("/", 1)[-1] for a in links if a]
    assert shown[0] == commits[0]
    assert sorted(shown) == sorted(commits)
    assert browser.find_element(By.CSS_SELECTOR, "#timeline tbody tr.merge")


def test_filtering_the_timeline_by_agent_shows_only_that_agents_commits(
    browser: Any, server: Server
) -> None:
    open_page(browser, server.url + "/timeline")
    browser.find_element(By.ID, "f-agent").send_keys("planner")
    browser.find_element(By.ID, "f-apply").click()
    wait(browser).until(ec.url_contains("agent=planner"))
    shown = rows(browser)
    assert {r.find_element(By.CSS_SELECTOR, "td.agent").text for r in shown} == {"planner"}
    commits = [r for r in shown if r.find_elements(By.CSS_SELECTOR, "a.commit")]
    by_git = git(
        server.vault, "log", "main", "--format=%(trailers:key=Agent-Id,valueonly,separator=)"
    ).split()
    assert len(commits) == by_git.count("planner") > 0  # and the legacy events by planner


def test_a_commit_page_summarises_the_change_value_by_value_with_the_patch_a_click_away(
    browser: Any, server: Server
) -> None:
    open_page(browser, server.url + "/timeline?agent=planner")
    rows(browser)[0].find_element(By.CSS_SELECTOR, "a.commit").click()
    wait(browser).until(ec.presence_of_element_located((By.ID, "summary")))
    lines = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#summary li")]
    assert "/tasks/[id=T-001]/status: 'todo' → 'doing'" in lines
    patch = browser.find_element(By.CSS_SELECTOR, "#patch pre")
    assert not patch.is_displayed()
    browser.find_element(By.CSS_SELECTOR, "#patch summary").click()
    assert patch.is_displayed()
    ops = json.loads(patch.text)
    assert {"op": "replace", "path": "/tasks/0/status", "value": "doing"} in ops


def test_a_merge_commit_shows_both_sides_and_the_strategy_per_key(
    browser: Any, server: Server
) -> None:
    merge = git(server.vault, "log", "--merges", "--format=%H", "main").split()[-1]
    open_page(browser, f"{server.url}/commit/{merge}")
    ours = browser.find_element(By.ID, "ours").text
    theirs = browser.find_element(By.ID, "theirs").text
    assert "/tasks/[id=T-001]/status: 'todo' → 'doing'" in ours
    assert "/tasks/[id=T-002]/status: 'todo' → 'done'" in theirs
    recorded = git(
        server.vault, "log", "-1", "--format=%(trailers:key=Merge-Strategy,valueonly)", merge
    ).strip()  # e.g. "tasks=splice": what git says the merge did, shown as "tasks: splice"
    key, how = recorded.split("=")
    assert f"{key}: {how}" in browser.find_element(By.TAG_NAME, "main").text


def test_the_blame_of_a_value_names_its_writer_and_links_to_the_commit(
    browser: Any, server: Server
) -> None:
    open_page(browser, server.url + "/document?path=/tasks")
    row = browser.find_element(By.CSS_SELECTOR, '.row[data-path="/tasks/[id=T-001]/status"]')
    assert "'doing'" in row.text
    row.find_element(By.CSS_SELECTOR, "button.blame").click()
    entry = wait(browser).until(lambda d: row.find_element(By.CSS_SELECTOR, ".blame-entry"))
    assert entry.text.startswith("planner · planning-session, confidence 0.9")
    planner = git(
        server.vault, "log", "main", "--author=planner", "--no-merges", "--format=%H"
    ).split()[0]
    entry.find_element(By.TAG_NAME, "a").click()
    wait(browser).until(ec.url_contains("/commit/"))
    assert browser.find_element(By.ID, "commit-id").text == planner


def test_the_document_can_be_browsed_at_an_earlier_revision(browser: Any, server: Server) -> None:
    root = git(server.vault, "rev-list", "--max-parents=0", "main").strip()
    open_page(browser, f"{server.url}/document?rev={root}&path=/tasks/0/status")
    assert "'todo'" in browser.find_element(By.ID, "tree").text


def test_resolving_a_conflict_in_the_page_moves_main_with_the_reviewers_trailers(
    browser: Any, server: Server
) -> None:
    before = git(server.vault, "rev-parse", "main").strip()
    sign_in(browser, server)
    section = browser.find_element(By.CSS_SELECTOR, 'section.conflict[data-id="coder/1"]')
    assert "/tasks/[id=T-003]/status" in section.text
    section.find_element(By.CSS_SELECTOR, "button.theirs").click()
    wait(browser).until(ec.presence_of_element_located((By.ID, "commit-id")))
    head = git(server.vault, "rev-parse", "main").strip()
    assert browser.find_element(By.ID, "commit-id").text == head != before
    assert git(server.vault, "rev-parse", "main^1").strip() == before
    trailers = git(server.vault, "log", "-1", "--format=%(trailers:only,unfold)", "main")
    assert f"Agent-Id: {PERSON}\n" in trailers
    assert "Source: review-ui\n" in trailers
    assert f"Resolved-By: {PERSON}\n" in trailers
    assert "Conflict: coder/1\n" in trailers
    assert git(server.vault, "for-each-ref", "refs/conflicts/") == ""
    status = json.loads(git(server.vault, "show", "main:tasks.json"))[2]["status"]
    assert status == "blocked"  # the proposal's value


def test_per_pointer_picks_in_the_page_keep_the_chosen_side(browser: Any, server: Server) -> None:
    sign_in(browser, server)
    section = browser.find_element(By.CSS_SELECTOR, 'section.conflict[data-id="coder/1"]')
    section.find_element(By.CSS_SELECTOR, 'input[value="ours"]').click()
    section.find_element(By.CSS_SELECTOR, "button.picks").click()
    wait(browser).until(ec.presence_of_element_located((By.ID, "commit-id")))
    status = json.loads(git(server.vault, "show", "main:tasks.json"))[2]["status"]
    assert status == "todo"  # main's (the reviewer's) value
    log = git(server.vault, "log", "-1", "--format=%(trailers:key=Resolved,valueonly)", "main")
    assert "/tasks/[id=T-003]/status -> ours" in log


def test_dropping_a_conflict_in_the_page_leaves_main_alone(browser: Any, server: Server) -> None:
    before = git(server.vault, "rev-parse", "main").strip()
    sign_in(browser, server)
    browser.find_element(By.CSS_SELECTOR, "button.drop").click()
    wait(browser).until(ec.presence_of_element_located((By.ID, "no-conflicts")))
    assert git(server.vault, "rev-parse", "main").strip() == before
    assert git(server.vault, "for-each-ref", "refs/conflicts/") == ""


def test_a_checkin_from_the_cli_appears_on_the_timeline_without_a_reload(
    browser: Any, server: Server, tmp_path: Path
) -> None:
    open_page(browser, server.url + "/timeline")
    wait(browser).until(
        lambda d: "on" in (d.find_element(By.ID, "live-status").get_attribute("class") or "")
    )
    browser.execute_script("window.__sameDocument = 42;")
    doc = json.loads(cli(server.vault, "checkout", "planner", "600").stdout)
    doc["tasks"][5]["status"] = "live-test"
    proposal = tmp_path / "p.json"
    proposal.write_text(json.dumps(doc))
    r = cli(server.vault, "checkin", "planner", str(proposal), "cli-live", "0.6", "seen live")
    assert r.returncode == 0, r.stderr
    head = git(server.vault, "rev-parse", "main").strip()
    row = wait(browser).until(
        lambda d: d.find_element(
            By.CSS_SELECTOR, f'#timeline tbody tr.new a[href="/commit/{head}"]'
        )
    )
    assert row.text == head[:12]
    first = rows(browser)[0]
    assert "cli-live" in first.text and "seen live" in first.text
    assert browser.execute_script("return window.__sameDocument;") == 42


def test_a_value_holding_a_script_is_shown_as_text_and_never_run(
    browser: Any, server: Server
) -> None:
    reviewer = git(server.vault, "log", "main", "--author=reviewer", "--format=%H").split()[0]
    for url in ("/document?path=/roadmap", "/timeline", f"/commit/{reviewer}"):
        open_page(browser, server.url + url)
        text = browser.find_element(By.TAG_NAME, "main").text
        assert "<script>document.title='pwned'" in text, url
        assert browser.execute_script("return window.__pwned;") is None, url
        assert browser.title != "pwned"
        assert not browser.find_elements(By.CSS_SELECTOR, "main script, main img")
    assert SCRIPT.startswith("<script>")
