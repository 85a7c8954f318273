"""The dashboard (GET /) and the HTTP reference (GET /docs) in a real headless Chromium.

Debian's `chromium` and `chromium-driver`, driven by selenium (`.ci/run` installs them); the
module skips, saying what to install, when they are absent. One browser for the module and
one real server per auth mode, each on a 127.0.0.1 port; every test uses its own topics.
Screenshots go to $LOGSTORE_ARTIFACTS when set, else to pytest's temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from test_server_support import LiveServer

from logstore import Store
from logstore_server import Authenticator, ServerConfig

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is missing: pip install -e '.[test]'"
)
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "headless Chromium is missing: apt-get install -y chromium chromium-driver",
        allow_module_level=True,
    )

ADMIN_TOKEN = "dashboard-admin-token-0123456789"
READER_TOKEN = "dashboard-reader-token-0123456789"
AUTH_DOC = {
    "tokens": [
        {"name": "ops", "token": ADMIN_TOKEN, "admin": True},
        {"name": "reader", "token": READER_TOKEN, "subscribe": ["orders.*"]},
    ]
}
WAIT = 15.0
"""Seconds a test waits for the page: the page samples the API every 2 s, and this machine
is shared; only the live-tail test bounds a delay tighter, because that is what it proves."""


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    where = os.environ.get("LOGSTORE_ARTIFACTS")
    folder = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in CI containers: Chromium's sandbox needs user namespaces
        "--disable-dev-shm-usage",
        "--window-size=1280,800",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",  # no update or safe-browsing calls of its own
        "--disable-component-update",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(
        service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options
    )
    try:
        yield driver
    finally:
        driver.quit()


def _serve(tmp_path_factory, config: ServerConfig):
    store = Store(tmp_path_factory.mktemp("data") / "store", fsync="never")
    server = LiveServer(store, config)
    return store, server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store, live = _serve(tmp_path_factory, ServerConfig())
    yield live
    live.stop()
    store.close()


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    store, live = _serve(tmp_path_factory, ServerConfig(auth=Authenticator.from_document(AUTH_DOC)))
    yield live
    live.stop()
    store.close()


def _api(server, method, path, body=None, token=None, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    reply = server.request(method, path, json_body=body, headers=headers, **kw)
    assert reply.status < 300, (method, path, reply.status, reply.body)
    return reply.json if reply.body else None


def _publish(server, topic, messages, token=None):
    return _api(server, "POST", f"/topics/{topic}/messages", {"messages": messages}, token)


def _open(browser, server, token=None):
    """Load the dashboard in a fresh tab state: no token kept, then `token` if given."""
    browser.get(server.url + "/")
    browser.execute_script("sessionStorage.clear()")
    if token:
        browser.execute_script("sessionStorage.setItem('logstore.token', arguments[0])", token)
    browser.refresh()
    if token or server.config.auth is None:
        _wait(browser, _started_or_asking, "the page to start")
    if token and not browser.find_element(By.ID, "app").is_displayed():
        # The kept token can be dropped by a refusal meant for the page before (a previous
        # test's wrong token): sign in as a person would.
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()
        _wait(browser, lambda d: d.find_element(By.ID, "app").is_displayed(), "the page to start")


def _started_or_asking(browser) -> bool:
    return any(browser.find_element(By.ID, i).is_displayed() for i in ("app", "signin"))


def _wait(browser, condition, what, timeout=WAIT):
    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.05).until(condition)
    except TimeoutException:
        page = _page_text(browser)
        raise AssertionError(f"waited {timeout} s for {what}; page says: {page}") from None


def _page_text(browser) -> str:
    return browser.find_element(By.TAG_NAME, "body").text[-2000:]


def _select_topic(browser, topic):
    _wait(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, f'#topics tr[data-topic="{topic}"] button'),
        f"topic {topic} in the list",
    )[0].click()
    _wait(browser, lambda d: d.find_element(By.ID, "topic-view").is_displayed(), "the topic view")


def _tab(browser, name):
    browser.find_element(By.CSS_SELECTOR, f'#tabs button[data-tab="{name}"]').click()


def _cell_text(browser, selector) -> str | None:
    found = browser.find_elements(By.CSS_SELECTOR, selector)
    return found[0].text if found else None


def _screenshot(browser, artifacts, name):
    browser.save_screenshot(str(artifacts / f"{name}.png"))


def _console(browser) -> list[dict]:
    return browser.get_log("browser")


def _requested_urls(browser) -> list[str]:
    """Every URL the browser asked for since the last call (Chrome's network log)."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_dashboard_and_reference_load_without_console_errors_or_other_origins(
    browser, server, artifacts
):
    _api(server, "PUT", "/topics/orders.eu", {"name": "Orders (EU)", "retention_ms": 86400000})
    _api(server, "PUT", "/topics/orders.eu/subscriptions/billing", {"start": "earliest"})
    _api(server, "PUT", "/topics/orders.eu/subscriptions/audit", {"start": "earliest"})
    _api(server, "PUT", "/topics/payments", {"retention_bytes": 1 << 30})
    _console(browser), _requested_urls(browser)  # drop what earlier pages logged
    _open(browser, server)
    _select_topic(browser, "orders.eu")
    for burst in range(4):  # traffic across a few samples, so the charts have lines
        _publish(
            server,
            "orders.eu",
            [{"key": f"c-{i}", "value": json.dumps({"n": i})} for i in range(40 + 25 * burst)],
        )
        _publish(server, "payments", [{"value": "p"}] * (10 * burst + 5))
        deliveries = _api(server, "POST", "/topics/orders.eu/subscriptions/billing/poll?max=60")
        _api(
            server,
            "POST",
            "/topics/orders.eu/subscriptions/billing/ack",
            {"offsets": [d["offset"] for d in deliveries["messages"]]},
        )
        time.sleep(2.1)  # one dashboard sample per burst: what the charts are drawn from
    _wait(
        browser,
        lambda d: (
            d.find_element(By.CSS_SELECTOR, '#topics tr[data-topic="orders.eu"] polyline')
            .get_attribute("points")
            .count(",")
            >= 3
        ),
        "the publish-rate chart of orders.eu",
    )
    _screenshot(browser, artifacts, "dashboard-live")
    _tab(browser, "browser")
    browser.find_element(By.CSS_SELECTOR, "#browse button[type=submit]").click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#messages tbody tr"), "messages")
    _tab(browser, "tail")
    _wait(browser, lambda d: d.find_element(By.ID, "tail-status").text == "live", "the tail")
    browser.get(server.url + "/docs")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "section.operation"), "the reference")
    _screenshot(browser, artifacts, "docs")

    assert _console(browser) == []
    urls = _requested_urls(browser)
    assert urls, "Chrome's network log recorded nothing: the check would prove nothing"
    assert [u for u in urls if not u.startswith(server.url + "/")] == []
    entries = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert entries and all(name.startswith(server.url + "/") for name in entries), entries


def test_reference_page_shows_every_operation_of_the_api_document(browser, server):
    document = _api(server, "GET", "/openapi.json")
    operations = sum(
        1 for item in document["paths"].values() for method in item if method != "parameters"
    )
    browser.get(server.url + "/docs#op-seek")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "section.operation"), "the reference")
    shown = browser.find_elements(By.CSS_SELECTOR, "section.operation")
    assert len(shown) == operations
    seek = browser.find_element(By.ID, "op-seek").text
    assert "POST /topics/{topic}/subscriptions/{sub}/seek" in seek
    assert '"position"' in seek
    link = browser.find_element(By.CSS_SELECTOR, '#op-getTopic a[href="#schema-TopicInfo"]')
    assert link.is_displayed()


def test_message_published_over_http_appears_in_the_live_tail_within_a_second(
    browser, server, artifacts
):
    _api(server, "PUT", "/topics/tail.me")
    _publish(server, "tail.me", [{"value": "before the page"}])
    _open(browser, server)
    _select_topic(browser, "tail.me")
    _tab(browser, "tail")
    _wait(browser, lambda d: d.find_element(By.ID, "tail-status").text == "live", "the tail")
    for i in range(3):
        started = time.monotonic()
        first = _publish(server, "tail.me", [{"value": f"live {i}", "headers": {"n": str(i)}}])
        row = f'#tail tr[data-offset="{first["first_offset"]}"]'
        # The bound is the claim under test: an SSE event reaches the page at once. A second
        # is generous for a loopback socket even on this shared machine.
        _wait(browser, lambda d, row=row: d.find_elements(By.CSS_SELECTOR, row), row, 1.0)
        assert time.monotonic() - started < 1.0
        assert f"live {i}" in browser.find_element(By.CSS_SELECTOR, row).text
    rows = browser.find_elements(By.CSS_SELECTOR, "#tail tbody tr")
    assert [r.get_attribute("data-offset") for r in rows] == ["3", "2", "1"]
    _screenshot(browser, artifacts, "live-tail")


def test_lag_drops_after_an_ack(browser, server, artifacts):
    _api(server, "PUT", "/topics/lagging")
    _api(server, "PUT", "/topics/lagging/subscriptions/billing", {"start": "earliest"})
    _publish(server, "lagging", [{"value": f"m{i}"} for i in range(5)])
    _open(browser, server)
    _select_topic(browser, "lagging")
    lag = '#subscriptions tr[data-sub="billing"] .lag'
    pending = '#subscriptions tr[data-sub="billing"] .pending'
    _wait(browser, lambda d: _cell_text(d, lag) == "5", "lag 5")
    polled = _api(server, "POST", "/topics/lagging/subscriptions/billing/poll?max=5")["messages"]
    _wait(browser, lambda d: _cell_text(d, pending) == "5", "5 pending after the poll")
    assert _cell_text(browser, lag) == "5"
    _api(
        server,
        "POST",
        "/topics/lagging/subscriptions/billing/ack",
        {"leases": [m["lease"] for m in polled]},
    )
    _wait(browser, lambda d: _cell_text(d, lag) == "0", "lag 0 after the ack")
    assert _cell_text(browser, pending) == "0"
    assert _cell_text(browser, '#subscriptions tr[data-sub="billing"] .ack-floor') == "5"
    chart = browser.find_element(By.CSS_SELECTOR, '#subscriptions tr[data-sub="billing"] polyline')
    heights = [float(p.split(",")[1]) for p in chart.get_attribute("points").split()]
    assert min(heights) < max(heights), "the lag chart should show the drop"
    _screenshot(browser, artifacts, "lag-after-ack")


@pytest.mark.parametrize(
    ("search", "field"),
    [("eu-north-7", "header value"), ("customer-0042", "key"), ("refund issued", "value")],
)
def test_search_finds_a_message_by_key_header_or_value(browser, server, search, field):
    topic = "search." + field.replace(" ", "-")
    _api(server, "PUT", f"/topics/{topic}")
    messages = [
        {"key": f"customer-{i:04}", "value": f"order {i} paid", "headers": {"region": "eu-west-1"}}
        for i in range(60)
    ]
    messages[42] = {
        "key": "customer-0042",
        "value": "order 42 refund issued",
        "headers": {"region": "eu-north-7"},
    }
    _publish(server, topic, messages)
    _publish(server, topic, [{"value_b64": "AAEC/w==", "headers": {"kind": "binary"}}])
    _open(browser, server)
    _select_topic(browser, topic)
    _tab(browser, "browser")
    browser.find_element(By.ID, "browse-search").send_keys(search)
    browser.find_element(By.CSS_SELECTOR, "#browse button[type=submit]").click()
    _wait(browser, lambda d: "searched" in d.find_element(By.ID, "browse-summary").text, "search")
    rows = browser.find_elements(By.CSS_SELECTOR, "#messages tbody tr")
    assert [r.get_attribute("data-offset") for r in rows] == ["42"]
    assert "1 matching" in browser.find_element(By.ID, "browse-summary").text
    rows[0].click()
    assert "eu-north-7" in browser.find_element(By.ID, "detail-fields").text
    browser.find_element(By.ID, "view-hex").click()
    value_hex = " ".join(f"{b:02x}" for b in b"order 42 refund issued"[:16])
    assert value_hex in browser.find_element(By.ID, "detail-value").text


def test_browser_shows_a_binary_value_in_hex_from_an_offset(browser, server):
    _api(server, "PUT", "/topics/binary")
    _publish(server, "binary", [{"value": "text"}, {"value_b64": "AAEC/w=="}, {"value": "x"}])
    _open(browser, server)
    _select_topic(browser, "binary")
    _tab(browser, "browser")
    browser.find_element(By.ID, "browse-offset").send_keys("1")
    browser.find_element(By.CSS_SELECTOR, "#browse button[type=submit]").click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#messages tbody tr"), "messages")
    rows = browser.find_elements(By.CSS_SELECTOR, "#messages tbody tr")
    assert [r.get_attribute("data-offset") for r in rows] == ["1", "2"]
    rows[0].click()
    assert browser.find_element(By.ID, "detail-value").text.startswith("00000000  00 01 02 ff")


def test_seek_from_the_page_moves_the_subscription(browser, server):
    _api(server, "PUT", "/topics/replay")
    _api(server, "PUT", "/topics/replay/subscriptions/billing", {"start": "earliest"})
    _publish(server, "replay", [{"value": f"m{i}"} for i in range(10)])
    _open(browser, server)
    _select_topic(browser, "replay")
    row = '#subscriptions tr[data-sub="billing"]'
    _wait(browser, lambda d: _cell_text(d, row + " .lag") == "10", "lag 10")

    def seek(mode, value=None):
        Select(browser.find_element(By.CSS_SELECTOR, row + " .seek-mode")).select_by_value(mode)
        if value is not None:
            box = browser.find_element(By.CSS_SELECTOR, f"{row} .seek-{mode}")
            box.clear()
            box.send_keys(value)
        browser.find_element(By.CSS_SELECTOR, row + " form.seek button").click()

    def info():
        return _api(server, "GET", "/topics/replay/subscriptions/billing")

    seek("offset", "7")
    assert _wait(browser, lambda d: info()["ack_floor"] == 7, "the seek to offset 7")
    assert info()["lag"] == 3
    _wait(browser, lambda d: _cell_text(d, row + " .ack-floor") == "7", "the page to show it")
    seek("latest")
    _wait(browser, lambda d: info()["ack_floor"] == 10, "the seek to the end")
    seek("earliest")
    _wait(browser, lambda d: info()["ack_floor"] == 0, "the seek to the start")
    seek("offset", "9")
    _wait(browser, lambda d: info()["ack_floor"] == 9, "the seek to offset 9")
    first = _api(server, "GET", "/topics/replay/messages?offset=0&max=1")["messages"][0]
    Select(browser.find_element(By.CSS_SELECTOR, row + " .seek-mode")).select_by_value("time")
    # A minute before the first message, in the browser's time zone, as the input takes it.
    browser.execute_script(
        "const d = new Date(arguments[1] - 60000);"
        "arguments[0].value = new Date(d - d.getTimezoneOffset() * 60000)"
        ".toISOString().slice(0, 19);",
        browser.find_element(By.CSS_SELECTOR, row + " .seek-time"),
        first["timestamp"],
    )
    browser.find_element(By.CSS_SELECTOR, row + " form.seek button").click()
    _wait(browser, lambda d: info()["ack_floor"] == 0, "the seek to a time before the first")


def test_with_auth_a_wrong_token_is_refused_and_shows_nothing(browser, secured, artifacts):
    _api(secured, "PUT", "/topics/ledger.secret", token=ADMIN_TOKEN)
    _open(browser, secured)
    _wait(browser, lambda d: d.find_element(By.ID, "signin").is_displayed(), "the sign-in form")
    browser.find_element(By.ID, "token").send_keys("not-a-token-anyone-has")
    browser.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()
    _wait(
        browser,
        lambda d: d.find_element(By.ID, "signin-error").text == "That token was refused.",
        "the refusal",
    )
    assert not browser.find_element(By.ID, "app").is_displayed()
    assert "ledger.secret" not in browser.page_source
    assert browser.execute_script("return sessionStorage.getItem('logstore.token')") is None
    _screenshot(browser, artifacts, "wrong-token")


def test_with_auth_a_reader_token_sees_no_admin_controls(browser, secured):
    for topic in ("orders.eu", "payments"):
        _api(secured, "PUT", f"/topics/{topic}", token=ADMIN_TOKEN)
    admin_controls = "#create-topic, #create-subscription, .admin, button.danger"

    _open(browser, secured, ADMIN_TOKEN)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "button.danger"), "delete buttons")
    assert browser.find_elements(By.CSS_SELECTOR, admin_controls)

    _open(browser, secured)
    browser.find_element(By.ID, "token").send_keys(READER_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()
    _wait(browser, lambda d: d.find_element(By.ID, "app").is_displayed(), "the page to start")
    _select_topic(browser, "orders.eu")
    assert "signed in as reader" in browser.find_element(By.ID, "who").text
    assert browser.find_elements(By.CSS_SELECTOR, admin_controls) == []
    listed = browser.find_elements(By.CSS_SELECTOR, "#topics tbody tr[data-topic]")
    topics = [r.get_attribute("data-topic") for r in listed]
    assert "orders.eu" in topics and all(t.startswith("orders.") for t in topics), topics


def test_with_auth_the_live_tail_sends_the_token(browser, secured):
    _api(secured, "PUT", "/topics/orders.tail", token=ADMIN_TOKEN)
    _open(browser, secured, READER_TOKEN)
    _select_topic(browser, "orders.tail")
    _tab(browser, "tail")
    _wait(browser, lambda d: d.find_element(By.ID, "tail-status").text == "live", "the tail")
    _publish(secured, "orders.tail", [{"value": "seen by the reader"}], token=ADMIN_TOKEN)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#tail tr[data-offset="0"]'), "it")


def test_with_auth_the_reference_page_asks_for_a_token_then_shows_the_api(browser, secured):
    browser.get(secured.url + "/docs")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    _wait(browser, lambda d: d.find_element(By.ID, "signin").is_displayed(), "the sign-in form")
    assert browser.find_elements(By.CSS_SELECTOR, "section.operation") == []
    browser.find_element(By.ID, "token").send_keys(READER_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "section.operation"), "the API")
    assert "No token needed." in browser.find_element(By.ID, "op-health").text
