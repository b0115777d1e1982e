//! The firmware in `embedded/` runs four grants on a Cortex-M4F under QEMU
//! and compares each answer with `embedded/expected.txt`. This test runs the
//! same scenario (the same file, compiled for the host) and holds that file
//! to what the host answers, so that the device and the host cannot drift:
//! a change to the engine that changes an answer fails here first.
//!
//! After an intended change, rewrite the file with
//! `ROPC_BLESS=1 cargo test -p ropc-core --test tests embedded`.

#[path = "../../embedded/src/scenario.rs"]
// The firmware uses parts of it that this test does not.
#[allow(dead_code)]
mod scenario;

use scenario::{Answer, Scenario, GRANTS};
use std::path::Path;

fn answers() -> Vec<Answer> {
    let mut scenario = Scenario::new().expect("the scenario's engine");
    let mut all = Vec::new();
    while let Some(answer) = scenario.next_answer() {
        all.push(answer.expect("a grant of the scenario"));
    }
    all
}

fn render(answers: &[Answer]) -> String {
    let mut text = String::new();
    for a in answers {
        let body = std::str::from_utf8(&a.body).expect("JSON is UTF-8");
        assert!(!body.contains('\n'), "one line per answer");
        text.push_str(&format!("{} {} {}\n", a.name, a.status, body));
    }
    text
}

fn json(body: &[u8]) -> serde_like::Value {
    serde_like::parse(std::str::from_utf8(body).expect("UTF-8"))
}

#[test]
fn the_device_scenario_answers_what_an_oauth_client_expects() {
    let a = answers();
    assert_eq!(a.iter().map(|a| a.name).collect::<Vec<_>>(), GRANTS);
    let statuses: Vec<u16> = a.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 400, 200, 400]);

    let login = json(&a[0].body);
    assert_eq!(login.get("scope"), Some("read write"));
    assert_eq!(login.get("token_type"), Some("bearer"));
    assert_eq!(login.get("expires_in"), Some("600"));
    let (access, refresh) = (login.get("access_token").unwrap(), login.get("refresh_token").unwrap());
    assert_ne!(access, refresh);

    assert_eq!(json(&a[1].body).get("error"), Some("invalid_grant"));

    let refreshed = json(&a[2].body);
    assert_eq!(refreshed.get("scope"), Some("read"), "the refresh narrowed the scope");
    assert_ne!(refreshed.get("refresh_token"), Some(refresh), "the refresh token rotated");
    assert_ne!(refreshed.get("access_token"), Some(access));

    assert_eq!(json(&a[3].body).get("error"), Some("invalid_request"));
}

#[test]
fn the_device_scenario_answers_the_bytes_in_expected_txt() {
    let text = render(&answers());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../embedded/expected.txt");
    if std::env::var_os("ROPC_BLESS").is_some() {
        let tmp = path.with_extension("txt.tmp");
        std::fs::write(&tmp, &text).expect("write expected.txt.tmp");
        std::fs::rename(&tmp, &path).expect("replace expected.txt");
    }
    let committed = std::fs::read_to_string(&path).expect("embedded/expected.txt");
    assert_eq!(committed, text, "the host's answers differ from embedded/expected.txt; bless with ROPC_BLESS=1");
    // The firmware's own comparison agrees with this one.
    for (line, answer) in committed.lines().zip(answers()) {
        assert!(scenario::matches(line, &answer));
    }
    let mut wrong = answers().remove(0);
    wrong.body[10] ^= 1;
    assert!(!scenario::matches(committed.lines().next().unwrap(), &wrong), "one flipped bit is a mismatch");
}

/// Just enough JSON for flat objects of strings and numbers.
mod serde_like {
    pub struct Value(Vec<(String, String)>);

    impl Value {
        pub fn get(&self, key: &str) -> Option<&str> {
            self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
        }
    }

    pub fn parse(s: &str) -> Value {
        let inner = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')).expect("an object");
        let members = inner
            .split(',')
            .map(|m| {
                let (k, v) = m.split_once(':').expect("key:value");
                (k.trim_matches('"').to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        Value(members)
    }
}
