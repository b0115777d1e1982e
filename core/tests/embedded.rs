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

use crate::harness::{parse_object, Json};
use scenario::{Answer, Scenario, GRANTS};
use std::collections::BTreeMap;
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

fn json(body: &[u8]) -> BTreeMap<String, Json> {
    parse_object(std::str::from_utf8(body).expect("UTF-8"))
}

fn text(value: &str) -> Option<Json> {
    Some(Json::Str(value.to_owned()))
}

#[test]
fn the_device_scenario_answers_what_an_oauth_client_expects() {
    let a = answers();
    assert_eq!(a.iter().map(|a| a.name).collect::<Vec<_>>(), GRANTS);
    let statuses: Vec<u16> = a.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 400, 200, 400]);

    let mut login = json(&a[0].body);
    assert_eq!(login.get("scope").cloned(), text("read write"));
    assert_eq!(login.get("token_type").cloned(), text("bearer"));
    assert_eq!(login.get("expires_in"), Some(&Json::Num(600)));
    let (access, refresh) = (login.remove("access_token").unwrap(), login.remove("refresh_token").unwrap());
    assert_ne!(access, refresh);

    assert_eq!(json(&a[1].body).remove("error"), text("invalid_grant"));

    let mut refreshed = json(&a[2].body);
    assert_eq!(refreshed.get("scope").cloned(), text("read"), "the refresh narrowed the scope");
    assert_ne!(refreshed.remove("refresh_token"), Some(refresh), "the refresh token rotated");
    assert_ne!(refreshed.remove("access_token"), Some(access));

    assert_eq!(json(&a[3].body).remove("error"), text("invalid_request"));
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
