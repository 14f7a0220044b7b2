//! The staff web UI in a real browser: headless Chromium (Debian's
//! `chromium`, driven over WebDriver by `chromium-driver`) against the real
//! `central` binary running the api role over a database that holds a
//! pickup and its return (stored as the bridge and the worker store them,
//! real JPEG frames in the object store) and a fleet with an offline board.
//!
//! A full review on a tablet-sized window: sign in, open the queue, open
//! the return, compare pickup and return for a finding and zoom in, confirm
//! it with a comment, see the audit entry, decide the rest, mark reviewed,
//! approve the charge, download the report, the vehicle's history, the
//! fleet. Then every language, the page's accessibility (labels, names,
//! touch targets, contrast, no sideways scrolling), the review by keyboard
//! alone, a viewer's read-only page, and sign-in through an OpenID Connect
//! provider (authorization code with PKCE).
//!
//! Screenshots: target/tmp/ui-screenshots/*.png.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use central::store::{SqliteStore, Store, StoreConfig};
use central::upload::{ObjectStoreConfig, open_object_store};
use chrono::{DateTime, Utc};
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::wire::{DeviceState, OutboxStats, examples};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::fleet_load::RoleProcess;
use support::staff::{Seeded, seed_pair};
use support::webdriver::{Browser, ENTER, TAB};

const SITE: &str = "de-muc-airport";
const OTHER_SITE: &str = "nl-ams-zuid";
const PLATE: &str = "MAB1234";

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots")
}

fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The api role of the real binary over seeded data.
struct Central {
    base: String,
    reviewer: String,
    viewer: String,
    seeded: Seeded,
    http: reqwest::Client,
    _api: RoleProcess,
    _dir: tempfile::TempDir,
}

impl Central {
    async fn start() -> Central {
        Central::start_with(|_| String::new()).await
    }

    /// `extra` adds to the configuration (given the api's port).
    async fn start_with(extra: impl FnOnce(u16) -> String) -> Central {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("central.sqlite3");
        let images_dir = dir.path().join("images");
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&StoreConfig::sqlite(&db))
                .await
                .expect("sqlite"),
        );
        let images = open_object_store(&ObjectStoreConfig::Local {
            path: images_dir.clone(),
            fsync: false,
        })
        .expect("images");
        let t0: DateTime<Utc> = Utc::now() - chrono::Duration::hours(40);
        let seeded = seed_pair(&store, &images, SITE, "bay-01", PLATE, 1, t0).await;
        seed_pair(
            &store,
            &images,
            OTHER_SITE,
            "bay-02",
            "GZ123K",
            1,
            t0 + chrono::Duration::hours(1),
        )
        .await;
        // The fleet: bay-01 online and current; bay-02 went offline with
        // an hour of inspections waiting in its outbox.
        let now = Utc::now();
        for (site, device, state, entries, age) in [
            (SITE, "bay-01", DeviceState::Online, 0, 0),
            (OTHER_SITE, "bay-02", DeviceState::Offline, 420, 3600),
        ] {
            let (site, device) = (SiteId::new(site).unwrap(), DeviceId::new(device).unwrap());
            store
                .record_status(
                    &inspection_core::wire::Status {
                        site: site.clone(),
                        device: device.clone(),
                        state,
                        at: now - chrono::Duration::seconds(30),
                        ..examples::status()
                    },
                    now,
                )
                .await
                .expect("status");
            store
                .record_telemetry(
                    &inspection_core::wire::Telemetry {
                        site,
                        device,
                        at: now - chrono::Duration::seconds(20),
                        outbox: OutboxStats {
                            entries,
                            bytes: entries * 300_000,
                            oldest_age_seconds: age,
                            dropped_total: 0,
                        },
                        ..examples::telemetry()
                    },
                    now,
                )
                .await
                .expect("telemetry");
        }
        drop(store);
        let reviewer = hash("reviewer-token-for-the-browser");
        let viewer = hash("viewer-token-for-the-browser");
        let tokens = dir.path().join("api-tokens.toml");
        std::fs::write(
            &tokens,
            format!(
                "[[token]]\nname = \"bay-reviewer\"\nrole = \"reviewer\"\nsites = [\"*\"]\ntoken_sha256 = \"{}\"\n\n\
                 [[token]]\nname = \"dashboard\"\nrole = \"viewer\"\nsites = [\"*\"]\ntoken_sha256 = \"{}\"\n",
                hash(&reviewer),
                hash(&viewer)
            ),
        )
        .expect("tokens");
        let port = support::mosquitto::free_port();
        let config = format!(
            "[store]\nurl = \"sqlite://{}\"\n\n[upload.object_store]\nkind = \"local\"\npath = \"{}\"\n\n\
             [api]\nlisten = \"127.0.0.1:{port}\"\ntokens = \"{}\"\n\n{}",
            db.display(),
            images_dir.display(),
            tokens.display(),
            extra(port),
        );
        let mut api = RoleProcess::new(dir.path(), "api", &config);
        api.start();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{base}/ui/")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the api role did not start:\n{}",
                api.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Central {
            base,
            reviewer,
            viewer,
            seeded,
            http,
            _api: api,
            _dir: dir,
        }
    }

    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("api")
    }
}

async fn sign_in(browser: &Browser, central: &Central, token: &str) {
    browser.goto(&format!("{}/ui/", central.base)).await;
    let field = browser.find("#token").await;
    browser.type_into(&field, token).await;
    browser.click(&browser.find("#signin").await).await;
    browser.find("#whoami:not([hidden])").await;
}

/// Waits until every picture in `selector` has loaded and decoded.
async fn pictures_loaded(browser: &Browser, selector: &str) -> u64 {
    let script = format!(
        "const imgs = [...document.querySelectorAll({selector:?})];\
         return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0) ? imgs.length : 0;"
    );
    browser
        .wait_for(&format!("pictures in {selector}"), &script)
        .await
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_review_in_the_browser() {
    let central = Central::start().await;
    let s = &central.seeded;
    let shots = screenshots();
    let browser = Browser::start(1024, 768).await;

    // Sign in with an API token.
    browser.goto(&format!("{}/ui/", central.base)).await;
    browser.find("#token").await;
    browser.screenshot(&shots.join("00-signin.png")).await;
    sign_in(&browser, &central, &central.reviewer).await;
    let who = browser.text(&browser.find("#whoami").await).await;
    assert!(who.contains("token:bay-reviewer"), "{who}");

    // The queue holds both returns, each with new and possibly new damage.
    let card = browser
        .find(&format!("#queue a.card[data-inspection=\"{}\"]", s.ret))
        .await;
    let text = browser.text(&card).await;
    assert!(text.contains(PLATE), "{text}");
    assert!(
        text.contains("1 new") && text.contains("1 possibly new"),
        "{text}"
    );
    let cards = browser
        .run(
            "return document.querySelectorAll('#queue a.card').length",
            vec![],
        )
        .await;
    assert_eq!(cards, json!(2));
    browser.screenshot(&shots.join("01-queue.png")).await;

    // Open the return: its annotated frames load.
    browser.click(&card).await;
    browser.find("#inspection-title").await;
    let frames = pictures_loaded(&browser, "#frames img").await;
    assert!(frames >= 2, "{frames} frames shown");
    let truncated = browser
        .run(
            &format!(
                "return document.querySelector('[data-frame=\"{}\"]').innerText",
                s.rear_truncated
            ),
            vec![],
        )
        .await;
    assert!(
        truncated
            .as_str()
            .unwrap_or_default()
            .contains("Picture not available"),
        "{truncated}"
    );
    browser.screenshot(&shots.join("02-inspection.png")).await;

    // Pickup beside return for the new dent, then zoomed in.
    let dent = format!("article[data-finding=\"{}\"]", s.new_dent);
    browser
        .click(
            &browser
                .find(&format!("{dent} button[data-action=compare]"))
                .await,
        )
        .await;
    pictures_loaded(&browser, &format!("{dent} figure.compare img")).await;
    let shape = browser
        .run(
            &format!(
                "const i = document.querySelector('{dent} figure.compare img');\
                 return [i.naturalWidth, i.naturalHeight, i.alt];"
            ),
            vec![],
        )
        .await;
    assert!(
        shape[0].as_u64() > shape[1].as_u64(),
        "pickup and return side by side: {shape}"
    );
    assert!(
        shape[2]
            .as_str()
            .unwrap_or_default()
            .contains("pickup on the left")
    );
    browser.screenshot(&shots.join("03-compare.png")).await;
    browser
        .click(&browser.find(&format!("{dent} figure.compare img")).await)
        .await;
    browser.find("#viewer[open]").await;
    browser.click(&browser.find("#zoom-in").await).await;
    browser.click(&browser.find("#zoom-in").await).await;
    let zoomed = browser
        .run(
            "const img = document.querySelector('#viewer-img');\
             const pane = document.querySelector('#viewer-pane');\
             return [document.querySelector('#zoom-level').textContent, img.clientWidth > pane.clientWidth];",
            vec![],
        )
        .await;
    assert_eq!(zoomed, json!(["225%", true]));
    browser.screenshot(&shots.join("03b-zoomed.png")).await;
    browser.click(&browser.find("#viewer-close").await).await;

    // Confirm it with a comment: its status and the audit trail change.
    let comment = "Dent on the front left door, not in the pickup photos";
    browser
        .type_into(
            &browser.find(&format!("#note-{}", s.new_dent)).await,
            comment,
        )
        .await;
    browser
        .click(
            &browser
                .find(&format!("{dent} button[data-action=confirm]"))
                .await,
        )
        .await;
    browser
        .find(&format!("{dent} [data-status=confirmed]"))
        .await;
    let entry = browser
        .text(&browser.find("#audit li[data-decision=confirm]").await)
        .await;
    assert!(entry.contains("token:bay-reviewer"), "{entry}");
    assert!(entry.contains(comment), "{entry}");
    assert!(entry.contains("new → confirmed"), "{entry}");
    let said = browser.text(&browser.find("#status").await).await;
    assert!(said.contains("confirmed saved"), "{said}");
    browser.screenshot(&shots.join("04-confirmed.png")).await;
    // The API agrees: the decision and who made it are stored.
    let detail: Value = central
        .get(&format!("/api/v1/inspections/{}", s.ret), &central.reviewer)
        .await
        .json()
        .await
        .expect("detail");
    let finding = detail["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == json!(s.new_dent))
        .unwrap();
    assert_eq!(finding["status"], "confirmed");
    assert_eq!(finding["note"], comment);
    let action = detail["review"]["actions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap();
    assert_eq!(action["by"], "token:bay-reviewer");
    assert_eq!(action["decision"], "confirm");

    // Reject the possible one; then mark reviewed and approve the charge.
    let possible = format!("article[data-finding=\"{}\"]", s.possible);
    browser
        .click(
            &browser
                .find(&format!("{possible} button[data-action=reject]"))
                .await,
        )
        .await;
    browser
        .find(&format!("{possible} [data-status=rejected]"))
        .await;
    browser
        .type_into(
            &browser.find("#review-note").await,
            "Checked with the customer",
        )
        .await;
    browser
        .click(&browser.find("#mark-reviewed:not([disabled])").await)
        .await;
    browser.find("#audit li[data-decision=reviewed]").await;
    browser
        .click(&browser.find("#approve-charge:not([disabled])").await)
        .await;
    let charge = browser.text(&browser.find("#charge").await).await;
    assert!(
        charge.contains("1 finding(s) approved by token:bay-reviewer"),
        "{charge}"
    );
    browser.screenshot(&shots.join("05-charged.png")).await;

    // The report, downloaded as a staff member would.
    browser
        .click(&browser.find("button[data-format=markdown]").await)
        .await;
    let markdown = browser.wait_download(".md").await;
    let from_api = central
        .get(
            &format!("/api/v1/inspections/{}/report/markdown", s.ret),
            &central.reviewer,
        )
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(markdown, from_api.to_vec());
    browser
        .click(&browser.find("button[data-format=pdf]").await)
        .await;
    let pdf = browser.wait_download(".pdf").await;
    assert!(pdf.starts_with(b"%PDF-"), "a PDF");

    // The vehicle's history: its pickup and its return.
    browser
        .click(&browser.find("a[href^=\"#/vehicles/\"]").await)
        .await;
    browser
        .find(&format!("a.card[data-inspection=\"{}\"]", s.pickup))
        .await;
    browser
        .find(&format!("a.card[data-inspection=\"{}\"]", s.ret))
        .await;
    browser.screenshot(&shots.join("06-vehicle.png")).await;

    // The fleet: the offline board with its backlog comes first, marked.
    browser.click(&browser.find("#nav-fleet").await).await;
    let row = browser
        .find(&format!(
            "#devices tbody tr:first-child[data-device=\"{OTHER_SITE}/bay-02\"]"
        ))
        .await;
    let marked = browser
        .run(
            "const r = arguments[0]; return [r.className, r.querySelector('[data-backlog]') !== null, r.innerText];",
            vec![Browser::arg(&row)],
        )
        .await;
    assert_eq!(marked[0], "alert", "{marked}");
    assert_eq!(marked[1], true, "{marked}");
    assert!(marked[2].as_str().unwrap().contains("offline"), "{marked}");
    let healthy = browser
        .find(&format!("#devices tr[data-device=\"{SITE}/bay-01\"]"))
        .await;
    let class = browser
        .run(
            "return arguments[0].className",
            vec![Browser::arg(&healthy)],
        )
        .await;
    assert_eq!(class, "");
    let summary = browser.text(&browser.find("#fleet-summary").await).await;
    assert!(
        summary.contains("2 devices: 1 offline or silent, 1 with an outbox backlog"),
        "{summary}"
    );
    browser.screenshot(&shots.join("07-fleet.png")).await;
}

/// Accessibility checks run in the page; returns the problems found.
const AUDIT: &str = r#"
const problems = [];
const visible = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== 'hidden'; };
const name = (el) => (el.getAttribute('aria-label') || el.textContent || el.getAttribute('alt') || '').trim();
for (const img of document.querySelectorAll('img')) {
  if (!img.hasAttribute('alt')) problems.push('img without alt: ' + img.src);
  else if (!img.alt && !img.closest('.brand') && !img.closest('dialog')) problems.push('img with empty alt outside the logo');
}
for (const el of document.querySelectorAll('input, select, textarea')) {
  if (el.type === 'hidden') continue;
  if (!(el.labels && el.labels.length) && !el.getAttribute('aria-label')) problems.push('no label: ' + (el.id || el.outerHTML.slice(0, 60)));
}
for (const el of document.querySelectorAll('button, a[href]')) {
  if (!visible(el) || el.closest('dialog:not([open])')) continue;
  if (!name(el)) problems.push('no accessible name: ' + el.outerHTML.slice(0, 80));
  const r = el.getBoundingClientRect();
  if (el.id !== 'skip' && (r.height < 44 || r.width < 44)) problems.push('touch target ' + Math.round(r.width) + 'x' + Math.round(r.height) + ': ' + name(el).slice(0, 40));
}
for (const el of document.querySelectorAll('select, input:not([type=checkbox]), textarea')) {
  if (visible(el) && el.getBoundingClientRect().height < 44) problems.push('small control: ' + el.id);
}
const shown = document.querySelector('main').innerText.match(/\b(null|undefined|NaN)\b|\[object \w+\]/);
if (shown) problems.push('shows ' + shown[0]);
if (document.documentElement.scrollWidth > window.innerWidth + 1) problems.push('scrolls sideways: ' + document.documentElement.scrollWidth + ' > ' + window.innerWidth);
// WCAG AA contrast of every text against its painted background.
const rgb = (c) => { const m = c.match(/[\d.]+/g); return m ? m.map(Number) : [0, 0, 0, 0]; };
const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
const background = (el) => { for (let e = el; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor); if (c.length < 4 || c[3] > 0.5) return c; } return [255, 255, 255]; };
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const seen = new Set();
while (walker.nextNode()) {
  const el = walker.currentNode.parentElement;
  if (!walker.currentNode.textContent.trim() || seen.has(el) || !visible(el) || el.closest('dialog:not([open])')) continue;
  seen.add(el);
  const style = getComputedStyle(el);
  const fg = lum(rgb(style.color)), bg = lum(background(el));
  const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
  const large = parseFloat(style.fontSize) >= 24 || (parseFloat(style.fontSize) >= 18.66 && Number(style.fontWeight) >= 700);
  if (ratio < (large ? 3 : 4.5)) problems.push('contrast ' + ratio.toFixed(2) + ': ' + el.textContent.trim().slice(0, 40));
}
return problems;
"#;

async fn audit(browser: &Browser, page: &str) {
    let problems = browser.run(AUDIT, vec![]).await;
    assert_eq!(problems, json!([]), "{page}: {problems:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_languages_labelled_readable_and_touch_sized() {
    let central = Central::start().await;
    let s = &central.seeded;
    let shots = screenshots();
    // A tablet held upright.
    let browser = Browser::start(768, 1024).await;
    sign_in(&browser, &central, &central.reviewer).await;
    browser.find("#queue a.card").await;
    audit(&browser, "queue").await;
    let texts: HashMap<&str, Value> = ["en", "de", "fr", "it", "es", "nl"]
        .into_iter()
        .map(|lang| {
            let text = central::api::LANGUAGES
                .contains(&lang)
                .then(|| {
                    std::fs::read_to_string(format!(
                        "{}/ui/i18n/{lang}.json",
                        env!("CARGO_MANIFEST_DIR")
                    ))
                    .expect("translation")
                })
                .expect("a language the server lists");
            (lang, serde_json::from_str(&text).expect("json"))
        })
        .collect();
    for lang in ["de", "fr", "it", "es", "nl", "en"] {
        browser
            .run(
                "const s = document.querySelector('#lang'); s.value = arguments[0];\
                 s.dispatchEvent(new Event('change'));",
                vec![json!(lang)],
            )
            .await;
        let title = texts[lang]["queue.title"].as_str().unwrap();
        let fleet = texts[lang]["nav.fleet"].as_str().unwrap();
        let script = format!(
            "return document.documentElement.lang === {lang:?} && \
             (document.querySelector('h1') || {{}}).textContent === {title:?} && \
             (document.querySelector('#nav-fleet') || {{}}).textContent === {fleet:?} && \
             document.querySelector('#queue a.card') !== null"
        );
        browser
            .wait_for(&format!("the queue in {lang}"), &script)
            .await;
        browser
            .screenshot(&shots.join(format!("queue-{lang}.png")))
            .await;
        audit(&browser, &format!("queue ({lang})")).await;
    }
    browser
        .goto(&format!("{}/ui/#/inspections/{}", central.base, s.ret))
        .await;
    pictures_loaded(&browser, "#frames img").await;
    audit(&browser, "inspection").await;
    browser
        .click(
            &browser
                .find(&format!(
                    "article[data-finding=\"{}\"] button[data-action=compare]",
                    s.new_dent
                ))
                .await,
        )
        .await;
    pictures_loaded(&browser, "figure.compare img").await;
    audit(&browser, "inspection with the comparison open").await;
    browser
        .screenshot(&shots.join("inspection-portrait.png"))
        .await;
    browser.goto(&format!("{}/ui/#/fleet", central.base)).await;
    browser.find("#devices tbody tr").await;
    audit(&browser, "fleet").await;
    browser.screenshot(&shots.join("fleet-portrait.png")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_works_from_the_keyboard() {
    let central = Central::start().await;
    let s = &central.seeded;
    let browser = Browser::start(1024, 768).await;
    sign_in(&browser, &central, &central.reviewer).await;
    browser.find("#queue a.card").await;
    // Reload, so the focus starts at the top of the page.
    browser
        .goto(&format!("{}/ui/?from-the-top#/queue", central.base))
        .await;
    browser.find("#queue a.card").await;

    // The first Tab reaches the skip link, visibly; Enter moves to main.
    browser.press(&[TAB]).await;
    let first = browser
        .run(
            "const e = document.activeElement; return [e.id, getComputedStyle(e).outlineStyle, e.getBoundingClientRect().top >= 0];",
            vec![],
        )
        .await;
    assert_eq!(first, json!(["skip", "solid", true]));
    browser.press(&[ENTER]).await;
    browser
        .wait_for(
            "main focused",
            "return document.activeElement.id === 'main'",
        )
        .await;

    // Tab to the return's card, open it with Enter.
    let card = format!("a.card[data-inspection=\"{}\"]", s.ret);
    tab_to(
        &browser,
        &format!("document.activeElement.matches('{card}')"),
    )
    .await;
    browser.press(&[ENTER]).await;
    browser.find("#inspection-title").await;
    // Tab to the dent's confirm button: every stop on the way shows focus.
    let confirm = format!(
        "article[data-finding=\"{}\"] button[data-action=confirm]",
        s.new_dent
    );
    tab_to(
        &browser,
        &format!("document.activeElement.matches('{confirm}')"),
    )
    .await;
    browser.press(&[ENTER]).await;
    browser
        .find(&format!(
            "article[data-finding=\"{}\"] [data-status=confirmed]",
            s.new_dent
        ))
        .await;
    // The focus lands on the decided finding's heading, not the top.
    browser
        .wait_for(
            "focus on the finding",
            &format!(
                "return document.activeElement.id === 'finding-{}'",
                s.new_dent
            ),
        )
        .await;
    browser
        .screenshot(&screenshots().join("keyboard-focus.png"))
        .await;
}

/// Presses Tab until `condition` holds, checking each focused element
/// shows a focus outline.
async fn tab_to(browser: &Browser, condition: &str) {
    for _ in 0..80 {
        browser.press(&[TAB]).await;
        let v = browser
            .run(
                &format!(
                    "const e = document.activeElement;\
                     return [{condition}, e === document.body || getComputedStyle(e).outlineStyle !== 'none', e.outerHTML.slice(0, 80)];"
                ),
                vec![],
            )
            .await;
        assert_eq!(v[1], true, "no visible focus on {}", v[2]);
        if v[0] == true {
            return;
        }
    }
    panic!("Tab never reached {condition}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_review_actions() {
    let central = Central::start().await;
    let s = &central.seeded;
    let browser = Browser::start(1024, 768).await;
    sign_in(&browser, &central, &central.viewer).await;
    let who = browser.text(&browser.find("#whoami").await).await;
    assert!(who.contains("token:dashboard (viewer)"), "{who}");
    browser
        .goto(&format!("{}/ui/#/inspections/{}", central.base, s.ret))
        .await;
    browser.find("[data-read-only]").await;
    pictures_loaded(&browser, "#frames img").await;
    let actions = browser
        .run(
            "return document.querySelectorAll('button[data-action=confirm], button[data-action=reject], #mark-reviewed, #approve-charge, textarea').length",
            vec![],
        )
        .await;
    assert_eq!(actions, json!(0));
    // Comparing and downloading stay.
    browser
        .find(&format!(
            "article[data-finding=\"{}\"] button[data-action=compare]",
            s.new_dent
        ))
        .await;
    browser.find("button[data-format=pdf]").await;
    browser
        .screenshot(&screenshots().join("viewer-inspection.png"))
        .await;
}

// ---- Sign-in through an OpenID Connect provider ---------------------------

/// A stand-in provider: `/authorize` signs the user in at once and sends
/// the browser back with a code; `/token` checks the code (once), the
/// client, the redirect URI and the PKCE verifier, and issues an RS256
/// access token the API verifies with the JWKS file.
mod oidc_provider {
    use super::*;
    use axum::Router;
    use axum::extract::{Query, State};
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::{IntoResponse, Redirect, Response};
    use axum::routing::{get, post};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    pub const ISSUER: &str = "https://idp.test/realms/rental";
    pub const CLIENT: &str = "inspection-ui";

    #[derive(Clone)]
    pub struct Provider {
        key: Arc<EncodingKey>,
        /// code → (redirect_uri, code_challenge)
        codes: Arc<Mutex<HashMap<String, (String, String)>>>,
        pub tokens_issued: Arc<Mutex<u32>>,
    }

    impl Provider {
        pub fn new() -> (Provider, JwkSet) {
            let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("rsa key");
            let key = EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).expect("pem");
            let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).expect("jwk");
            jwk.common.key_id = Some("idp-1".into());
            (
                Provider {
                    key: Arc::new(key),
                    codes: Arc::default(),
                    tokens_issued: Arc::default(),
                },
                JwkSet { keys: vec![jwk] },
            )
        }

        pub async fn serve(self) -> u16 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let app = Router::new()
                .route("/authorize", get(authorize))
                .route("/token", post(token))
                .with_state(self);
            tokio::spawn(async move { axum::serve(listener, app).await });
            port
        }
    }

    async fn authorize(
        State(p): State<Provider>,
        Query(q): Query<HashMap<String, String>>,
    ) -> Response {
        let ok = q.get("response_type").map(String::as_str) == Some("code")
            && q.get("client_id").map(String::as_str) == Some(CLIENT)
            && q.get("code_challenge_method").map(String::as_str) == Some("S256")
            && q.get("scope")
                .is_some_and(|s| s.split(' ').any(|s| s == "openid"));
        let (Some(redirect), Some(state), Some(challenge)) = (
            q.get("redirect_uri"),
            q.get("state"),
            q.get("code_challenge"),
        ) else {
            return (StatusCode::BAD_REQUEST, "missing parameters").into_response();
        };
        if !ok {
            return (StatusCode::BAD_REQUEST, format!("bad request: {q:?}")).into_response();
        }
        let code = format!("code-{}", uuid::Uuid::now_v7().simple());
        p.codes
            .lock()
            .unwrap()
            .insert(code.clone(), (redirect.clone(), challenge.clone()));
        let mut back = reqwest::Url::parse(redirect).expect("redirect uri");
        back.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", state);
        Redirect::to(back.as_str()).into_response()
    }

    async fn token(State(p): State<Provider>, body: String) -> Response {
        let form: HashMap<String, String> = reqwest::Url::parse(&format!("http://x/?{body}"))
            .expect("form")
            .query_pairs()
            .into_owned()
            .collect();
        let cors = [(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        )];
        let refuse = |why: &str| {
            (
                StatusCode::BAD_REQUEST,
                cors.clone(),
                axum::Json(json!({"error": "invalid_grant", "error_description": why})),
            )
                .into_response()
        };
        if form.get("grant_type").map(String::as_str) != Some("authorization_code")
            || form.get("client_id").map(String::as_str) != Some(CLIENT)
        {
            return refuse("grant type or client");
        }
        let Some(code) = form.get("code") else {
            return refuse("no code");
        };
        // A code works once.
        let Some((redirect, challenge)) = p.codes.lock().unwrap().remove(code) else {
            return refuse("unknown or used code");
        };
        if form.get("redirect_uri") != Some(&redirect) {
            return refuse("redirect_uri differs");
        }
        let verifier = form.get("code_verifier").cloned().unwrap_or_default();
        if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != challenge {
            return refuse("PKCE verifier does not match");
        }
        let now = Utc::now().timestamp();
        let claims = json!({
            "iss": ISSUER, "aud": "inspection-api", "sub": "anna.schmidt",
            "iat": now, "nbf": now - 5, "exp": now + 600,
            "realm_access": {"roles": ["reviewer"]}, "sites": [SITE],
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("idp-1".into());
        let jwt = jsonwebtoken::encode(&header, &claims, &p.key).expect("sign");
        *p.tokens_issued.lock().unwrap() += 1;
        (
            cors,
            axum::Json(json!({"access_token": jwt, "token_type": "Bearer", "expires_in": 600})),
        )
            .into_response()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_through_the_oidc_provider() {
    let (provider, jwks) = oidc_provider::Provider::new();
    let issued = provider.tokens_issued.clone();
    let idp = provider.serve().await;
    let jwks_dir = tempfile::tempdir().expect("tempdir");
    let jwks_file = jwks_dir.path().join("jwks.json");
    std::fs::write(&jwks_file, serde_json::to_vec(&jwks).unwrap()).expect("jwks");
    let central = Central::start_with(|_| {
        format!(
            "[api.oidc]\nissuer = \"{}\"\naudience = [\"inspection-api\"]\njwks_file = \"{}\"\n\
             roles_claim = \"realm_access.roles\"\n\n\
             [api.oidc.sign_in]\nauthorization_endpoint = \"http://127.0.0.1:{idp}/authorize\"\n\
             token_endpoint = \"http://127.0.0.1:{idp}/token\"\nclient_id = \"{}\"\n",
            oidc_provider::ISSUER,
            jwks_file.display(),
            oidc_provider::CLIENT,
        )
    })
    .await;
    let config: Value = central
        .http
        .get(format!("{}/ui/config.json", central.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["sign_in"]["client_id"], oidc_provider::CLIENT);

    let browser = Browser::start(1024, 768).await;
    browser.goto(&format!("{}/ui/", central.base)).await;
    browser.find("#sso").await;
    browser
        .screenshot(&screenshots().join("signin-provider.png"))
        .await;
    browser.click(&browser.find("#sso").await).await;
    // Away to the provider and back: signed in as the provider's user, with
    // that user's site only, and no code left in the address bar.
    let who = browser.find("#whoami:not([hidden])").await;
    let who = browser.text(&who).await;
    assert!(who.contains("user:anna.schmidt (reviewer)"), "{who}");
    browser
        .find(&format!(
            "#queue a.card[data-inspection=\"{}\"]",
            central.seeded.ret
        ))
        .await;
    let cards = browser
        .run(
            "return document.querySelectorAll('#queue a.card').length",
            vec![],
        )
        .await;
    assert_eq!(cards, json!(1), "only the user's site");
    let url = browser.current_url().await;
    assert!(!url.contains("code="), "{url}");
    assert_eq!(*issued.lock().unwrap(), 1);
    browser
        .screenshot(&screenshots().join("signin-provider-queue.png"))
        .await;
}
