use super::*;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

fn b64(bytes: &[u8]) -> String {
    let mut out = vec![0; ropc_core::base64::encoded_len_nopad(bytes.len())];
    ropc_core::base64::encode_url_nopad(bytes, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn object(json: &str) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_str(json).unwrap()
}

#[test]
fn thumbprints_match_the_rfcs_examples() {
    // RFC 7638 §3.1.
    let rsa = object(
        r#"{"kty":"RSA","e":"AQAB","alg":"RS256","kid":"2011-04-29","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}"#,
    );
    assert_eq!(b64(&PublicJwk::parse(&rsa).unwrap().thumbprint()), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    // RFC 8037 §A.3.
    let okp = object(r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#);
    assert_eq!(b64(&PublicJwk::parse(&okp).unwrap().thumbprint()), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
}

#[test]
fn private_symmetric_and_weak_keys_are_refused() {
    let with_d =
        object(r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGx"}"#);
    assert!(PublicJwk::parse(&with_d).unwrap_err().contains("private"));
    assert!(PublicJwk::parse(&object(r#"{"kty":"oct","k":"c2VjcmV0"}"#)).is_err());
    let small_rsa = object(
        r#"{"kty":"RSA","e":"AQAB","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"}"#,
    );
    assert!(PublicJwk::parse(&small_rsa).unwrap_err().contains("2048"));
    let p384 = object(r#"{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}"#);
    assert!(PublicJwk::parse(&p384).is_err());
}

/// An ES256 key pair, its public JWK, and a signed compact JWS.
fn es256(header: &str, claims: &str) -> (PublicJwk, String) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwk =
        object(&format!(r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}"}}"#, b64(&point[1..33]), b64(&point[33..])));
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let sig = pair.sign(&rng, input.as_bytes()).unwrap();
    (PublicJwk::parse(&jwk).unwrap(), format!("{input}.{}", b64(sig.as_ref())))
}

#[test]
fn a_signature_verifies_only_with_its_key_and_its_algorithm() {
    let (key, token) = es256(r#"{"alg":"ES256","kid":"k"}"#, r#"{"iss":"c","exp":1.5e9,"aud":["a","b"]}"#);
    let jws = decode(&token).unwrap();
    assert_eq!(jws.alg, Alg::Es256);
    assert!(jws.claims.aud.as_ref().unwrap().contains("b"));
    assert_eq!(jws.claims.exp.and_then(seconds), Some(1_500_000_000));
    key.verify(jws.alg, jws.signing_input.as_bytes(), &jws.signature).unwrap();
    // Another key of the same type.
    let (other, _) = es256(r#"{"alg":"ES256"}"#, "{}");
    assert!(other.verify(jws.alg, jws.signing_input.as_bytes(), &jws.signature).is_err());
    // A flipped bit of the claims.
    let mut tampered = jws.signing_input.as_bytes().to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(key.verify(jws.alg, &tampered, &jws.signature).is_err());
    // Alg confusion: the public key as an HMAC secret, or as another family.
    for alg in [Alg::Hs256, Alg::Rs256, Alg::EdDsa] {
        assert!(!key.fits(alg));
        assert!(key.verify(alg, jws.signing_input.as_bytes(), &jws.signature).is_err(), "{alg:?}");
    }
}

#[test]
fn malformed_and_unsigned_tokens_are_refused_before_any_key() {
    let none = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(b"{}"));
    assert_eq!(decode(&none).unwrap_err(), "the alg is none or unsupported");
    let crit = format!("{}.{}.AA", b64(br#"{"alg":"ES256","crit":["exp"]}"#), b64(b"{}"));
    assert_eq!(decode(&crit).unwrap_err(), "the header has crit");
    for bad in ["", "a.b", "a.b.c.d", "!!.e30.AA", &"A".repeat(MAX_JWS_LEN + 1)] {
        assert!(decode(bad).is_err(), "{bad:.20}");
    }
    let not_json = format!("{}.{}.AA", b64(br#"{"alg":"ES256"}"#), b64(b"[1]"));
    assert!(decode(&not_json).is_err());
}

#[test]
fn a_key_is_chosen_by_kid_or_as_the_only_fitting_one() {
    let (a, _) = es256("{}", "{}");
    let (b, _) = es256("{}", "{}");
    let named = |mut k: PublicJwk, kid: &str| {
        k.kid = Some(kid.into());
        k
    };
    let one = Jwks { keys: vec![a.clone()] };
    assert!(one.select(None, Alg::Es256).is_some());
    assert!(one.select(None, Alg::Rs256).is_none());
    let two = Jwks { keys: vec![named(a, "a"), named(b, "b")] };
    assert!(two.select(None, Alg::Es256).is_none(), "ambiguous without a kid");
    assert_eq!(two.select(Some("b"), Alg::Es256).and_then(|k| k.kid.as_deref()), Some("b"));
    assert!(two.select(Some("c"), Alg::Es256).is_none());
}

#[test]
fn hmac_keys_need_32_bytes_and_verify_in_constant_time() {
    assert!(HmacKey::new(&[7; 31]).is_err());
    let key = HmacKey::new(&[7; 32]).unwrap();
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[7; 32]), b"m");
    key.verify(b"m", tag.as_ref()).unwrap();
    assert!(key.verify(b"n", tag.as_ref()).is_err());
    assert_eq!(format!("{key:?}"), "HmacKey(<redacted>)");
}
