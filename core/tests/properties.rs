//! Property tests for the parsers: no input makes them panic, and what the
//! encoders write, the parsers read back.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use ropc_core::basic::{self, SCRATCH_LEN};
use ropc_core::form::{self, Form, Param};
use ropc_core::request::TokenRequest;
use ropc_core::Limits;

/// Bytes that look like a form body often enough to get past the first
/// checks: known names, separators, escapes, and arbitrary bytes.
fn formish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"&".to_vec()),
        Just(b"=".to_vec()),
        Just(b"+".to_vec()),
        Just(b"%".to_vec()),
        Just(b"%C3%A4".to_vec()),
        Just(b"%FF".to_vec()),
        Just(b"grant_type=password".to_vec()),
        Just(b"grant_type=refresh_token".to_vec()),
        Just(b"grant_type=client_credentials".to_vec()),
        prop::sample::select(Param::ALL.to_vec()).prop_map(|p| p.name().as_bytes().to_vec()),
        vec(any::<u8>(), 0..8),
    ];
    vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

/// Arbitrary Unicode, newlines and NULs included, `len` characters long.
fn chars(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    vec(any::<char>(), len).prop_map(String::from_iter)
}

fn header() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        vec(any::<u8>(), 0..64).prop_map(Some),
        (chars(0..12), chars(0..12)).prop_map(|(id, secret)| Some(basic::encode(&id, &secret).into_bytes())),
        vec(any::<u8>(), 0..48).prop_map(|tail| Some([b"Basic ".as_slice(), &tail].concat())),
    ]
}

proptest! {
    #[test]
    fn form_parse_never_panics(body in prop_oneof![vec(any::<u8>(), 0..512), formish()]) {
        let _ = Form::parse(&body, &Limits::default());
        let _ = Form::parse(&body, &Limits { max_body_len: 64, max_params: 3, max_authorization_len: 16 });
    }

    #[test]
    fn basic_parse_never_panics(header in vec(any::<u8>(), 0..1200)) {
        let mut scratch = [0u8; SCRATCH_LEN];
        let _ = basic::parse(&header, &mut scratch);
        let _ = basic::parse(&header, &mut [0u8; 7]);
    }

    #[test]
    fn token_request_parse_never_panics(body in formish(), header in header()) {
        let mut scratch = [0u8; SCRATCH_LEN];
        let _ = TokenRequest::parse(&body, header.as_deref(), &mut scratch, &Limits::default());
    }

    /// Known parameters with arbitrary values survive encode then parse;
    /// empty values count as omitted (RFC 6749 §3.2).
    #[test]
    fn form_round_trips(
        values in btree_map(0..Param::ALL.len(), any::<String>(), 0..=Param::ALL.len()),
        unknown in vec(("[a-z_]{1,10}", any::<String>()), 0..4),
    ) {
        let mut pairs: Vec<(&str, &str)> = values.iter().map(|(&i, v)| (Param::ALL[i].name(), v.as_str())).collect();
        // Parameters ropc does not know are ignored wherever they are.
        for (i, (name, value)) in unknown.iter().enumerate() {
            if !Param::ALL.iter().any(|p| p.name() == name) {
                pairs.insert(i.min(pairs.len()), (name.as_str(), value.as_str()));
            }
        }
        let body = form::encode_pairs(&pairs);
        let limits = Limits { max_body_len: usize::MAX, ..Limits::default() };
        let parsed = Form::parse(body.as_bytes(), &limits).expect("an encoded form parses");
        for (i, param) in Param::ALL.iter().enumerate() {
            let expected = values.get(&i).map(String::as_str).filter(|v| !v.is_empty());
            prop_assert_eq!(parsed.get(*param), expected, "{:?} in {:?}", param, body);
        }
    }

    /// Raw bytes (not UTF-8, say) in a parameter ropc ignores change
    /// nothing, wherever the parameter sits.
    #[test]
    fn unknown_parameter_bytes_are_ignored(
        values in btree_map(0..Param::ALL.len(), chars(0..12), 0..=Param::ALL.len()),
        junk in vec(any::<u8>(), 0..24),
        at in 0..=Param::ALL.len(),
    ) {
        let pairs: Vec<(&str, &str)> = values.iter().map(|(&i, v)| (Param::ALL[i].name(), v.as_str())).collect();
        let clean = form::encode_pairs(&pairs);
        let junk: Vec<u8> = [b"zz=".as_slice(), &junk].concat().into_iter().filter(|&b| b != b'&').collect();
        let mut pieces: Vec<&[u8]> = clean.as_bytes().split(|&b| b == b'&').collect();
        pieces.insert(at.min(pieces.len()), &junk);
        let dirty = pieces.join(&b'&');
        let limits = Limits::default();
        let expected = Form::parse(clean.as_bytes(), &limits).map(|f| form::known_pairs(&f).into_iter().map(|(p, v)| (p, v.to_owned())).collect::<Vec<_>>());
        let got = Form::parse(&dirty, &limits).map(|f| form::known_pairs(&f).into_iter().map(|(p, v)| (p, v.to_owned())).collect::<Vec<_>>());
        prop_assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(&dirty));
    }

    #[test]
    fn a_tokens_binding_is_read_back_and_nothing_else_passes_for_one(
        tail in vec(any::<u8>(), 0..100),
        thumbprint in any::<[u8; 32]>(),
        tag in prop::sample::select(vec![b'j', b'x', b'y', b'.', b'-']),
        cut in 0usize..88,
    ) {
        use ropc_core::token::{binding_of, TOKEN_LEN};
        use ropc_core::Binding;
        let random = "A".repeat(TOKEN_LEN);
        let mut b64 = vec![0; 43];
        ropc_core::base64::encode_url_nopad(&thumbprint, &mut b64).unwrap();
        let bound = format!("{random}.{}{}", char::from(tag), String::from_utf8(b64).unwrap());
        let expected = match tag {
            b'j' => Some(Binding::Dpop(thumbprint)),
            b'x' => Some(Binding::Certificate(thumbprint)),
            _ => None,
        };
        prop_assert_eq!(binding_of(&bound), expected);
        // A cut or extended text is never a bound token.
        prop_assert_eq!(binding_of(&bound[..cut.min(bound.len())]).filter(|b| *b != Binding::None), None);
        let longer = format!("{bound}{}", String::from_utf8_lossy(&tail));
        prop_assert!(tail.is_empty() || binding_of(&longer).is_none() || longer == bound);
    }

    #[test]
    fn basic_round_trips(id in chars(1..24), secret in chars(0..24)) {
        let header = basic::encode(&id, &secret);
        let mut scratch = [0u8; SCRATCH_LEN];
        let creds = basic::parse(header.as_bytes(), &mut scratch).expect("an encoded header parses");
        prop_assert_eq!(creds.client_id, id.as_str());
        prop_assert_eq!(creds.client_secret, secret.as_str());
    }
}

#[test]
fn form_values_borrow_or_decode_in_a_body_that_is_not_utf8() {
    let form = Form::parse(b"x=\xff\xfe&username=alice&password=p%21+x&scope=read", &Limits::default()).unwrap();
    let pairs: Vec<(Param, &str)> = form::known_pairs(&form);
    assert_eq!(pairs, [(Param::Username, "alice"), (Param::Password, "p! x"), (Param::Scope, "read")]);
    // A known parameter that is not UTF-8 is still refused.
    let e = Form::parse(b"x=\xff&username=al\xffice", &Limits::default()).unwrap_err();
    assert_eq!(e, form::FormError::InvalidUtf8);
}

#[test]
fn basic_round_trip_edge_cases() {
    // Colons, `+`, `%` and spaces are what the form-encoding step is for.
    for (id, secret) in [("a:b", ":"), ("+", "%41"), (" ", " "), ("é", "\0")] {
        let header = basic::encode(id, secret);
        let mut scratch = [0u8; SCRATCH_LEN];
        let creds = basic::parse(header.as_bytes(), &mut scratch).unwrap();
        assert_eq!((creds.client_id, creds.client_secret), (id, secret));
    }
}
