//! The scenarios: which request a virtual user sends next (RFC 6749 §4.3
//! password, §6 refresh, §4.4 client credentials, RFC 7662 introspection),
//! with the client authentication of §2.3.1, and how an answer is judged.
//!
//! A virtual user keeps the tokens it was given: ropc rotates refresh
//! tokens, so each refresh uses the refresh token of the previous answer.

use crate::client::Reply;
use crate::form::{basic_authorization, encoded, push_encoded, Secret};
use crate::stats::Outcome;
use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{Method, Request, Uri};
use http_body_util::Full;
use std::borrow::Cow;
use std::fmt::Write as _;

/// What the virtual users do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Password grants, round-robin over the users.
    Password,
    /// Refresh grants; each virtual user first gets a refresh token with a
    /// password grant.
    Refresh,
    /// Client credentials grants.
    ClientCredentials,
    /// RFC 7662 introspection of an access token obtained first.
    Introspect,
    /// `password_percent` % password grants, the rest refresh grants.
    Mixed {
        /// Share of password grants, 0..=100.
        password_percent: u32,
    },
}

impl Scenario {
    /// The scenario's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Password => "password",
            Scenario::Refresh => "refresh",
            Scenario::ClientCredentials => "client-credentials",
            Scenario::Introspect => "introspect",
            Scenario::Mixed { .. } => "mixed",
        }
    }
}

/// One kind of request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `grant_type=password`.
    Password,
    /// `grant_type=refresh_token`.
    Refresh,
    /// `grant_type=client_credentials`.
    ClientCredentials,
    /// An introspection request.
    Introspect,
}

impl Kind {
    /// Every kind, in [`Kind::index`] order.
    pub const ALL: [Kind; 4] = [Kind::Password, Kind::Refresh, Kind::ClientCredentials, Kind::Introspect];

    /// Position in [`Kind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Password => "password",
            Kind::Refresh => "refresh_token",
            Kind::ClientCredentials => "client_credentials",
            Kind::Introspect => "introspect",
        }
    }
}

/// How the client authenticates (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic.
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

/// The users of the password grant: `{user_prefix}K` with password
/// `{password_prefix}K` for K in `offset..offset + count`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Users {
    /// How many.
    pub count: u64,
    /// The number of the first user.
    pub offset: u64,
    /// Username before the number.
    pub user_prefix: String,
    /// Password before the number.
    pub password_prefix: String,
}

/// Everything needed to build the requests of a run.
#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    /// The scenario.
    pub scenario: Scenario,
    /// Token endpoint path (and query), from the URL.
    pub token_path: Uri,
    /// Introspection endpoint path.
    pub introspection_path: Uri,
    /// Client id.
    pub client_id: String,
    /// Client secret; `None` for a public client.
    pub client_secret: Option<Secret>,
    /// Client authentication method.
    pub auth: ClientAuth,
    /// Users for the password grant.
    pub users: Users,
    /// `scope` parameter, if any.
    pub scope: Option<String>,
    /// Grant that gets the access tokens to introspect.
    pub introspect_with: Kind,
    /// `--dpop`: a DPoP proof with every token request.
    pub dpop: Option<std::sync::Arc<crate::dpop::DpopProofs>>,
}

/// Builds the requests of each virtual user and judges the answers.
pub struct Workload {
    scenario: Scenario,
    token_path: Uri,
    introspection_path: Uri,
    host: HeaderValue,
    /// `Some` with Basic authentication; marked sensitive.
    authorization: Option<HeaderValue>,
    /// `&client_id=..&client_secret=..` with body authentication, else empty.
    body_auth: Secret,
    /// `&scope=..` or empty.
    scope: String,
    users: Users,
    user_prefix: String,
    password_prefix: String,
    client_credentials_body: Bytes,
    introspect_with: Kind,
    dpop: Option<std::sync::Arc<crate::dpop::DpopProofs>>,
}

/// One virtual user's state: how many requests it sent and its tokens.
#[derive(Debug)]
pub struct VirtualUser {
    index: u64,
    stride: u64,
    sent: u64,
    refresh_token: Option<Secret>,
    access_token: Option<Secret>,
}

impl VirtualUser {
    /// Virtual user `index` of `count`.
    pub fn new(index: u64, count: u64) -> Self {
        VirtualUser { index, stride: count.max(1), sent: 0, refresh_token: None, access_token: None }
    }
}

/// The members of a token or introspection response that matter here.
#[derive(serde::Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    access_token: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refresh_token: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    error: Option<Cow<'a, str>>,
    #[serde(default)]
    active: Option<bool>,
}

impl std::fmt::Debug for Workload {
    /// Only the harmless parts: the bodies may hold the client secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload")
            .field("scenario", &self.scenario)
            .field("token_path", &self.token_path)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Workload {
    /// Prepares the fixed parts of every request.
    pub fn new(spec: WorkloadSpec, host: HeaderValue) -> Result<Self, String> {
        let secret = spec.client_secret.as_ref().map_or("", Secret::expose);
        let (authorization, body_auth) = match spec.auth {
            ClientAuth::Basic => {
                let mut value = HeaderValue::from_str(&basic_authorization(&spec.client_id, secret))
                    .map_err(|_| "the client credentials do not fit in a header".to_owned())?;
                value.set_sensitive(true);
                (Some(value), String::new())
            }
            ClientAuth::Body => {
                let mut fields = String::from("&client_id=");
                push_encoded(&mut fields, &spec.client_id);
                if spec.client_secret.is_some() {
                    fields.push_str("&client_secret=");
                    push_encoded(&mut fields, secret);
                }
                (None, fields)
            }
        };
        let scope = spec.scope.as_deref().map_or_else(String::new, |s| format!("&scope={}", encoded(s)));
        let client_credentials_body = Bytes::from(format!("grant_type=client_credentials{scope}{body_auth}"));
        Ok(Workload {
            scenario: spec.scenario,
            token_path: spec.token_path,
            introspection_path: spec.introspection_path,
            host,
            authorization,
            body_auth: Secret::new(body_auth),
            scope,
            user_prefix: encoded(&spec.users.user_prefix),
            password_prefix: encoded(&spec.users.password_prefix),
            users: spec.users,
            client_credentials_body,
            introspect_with: spec.introspect_with,
            dpop: spec.dpop,
        })
    }

    /// The scenario.
    pub fn scenario(&self) -> Scenario {
        self.scenario
    }

    /// The request that gets `vu` the token its scenario needs, if it has
    /// none yet: a password grant for the refresh scenarios, the chosen
    /// grant for introspection.
    pub fn setup(&self, vu: &mut VirtualUser) -> Option<(Kind, Request<Full<Bytes>>)> {
        let kind = match self.scenario {
            Scenario::Refresh | Scenario::Mixed { .. } if vu.refresh_token.is_none() => Kind::Password,
            Scenario::Introspect if vu.access_token.is_none() => self.introspect_with,
            _ => return None,
        };
        Some((kind, self.build(kind, vu)))
    }

    /// The next measured request of `vu`.
    pub fn next(&self, vu: &mut VirtualUser) -> (Kind, Request<Full<Bytes>>) {
        let kind = match self.scenario {
            Scenario::Password => Kind::Password,
            Scenario::ClientCredentials => Kind::ClientCredentials,
            Scenario::Refresh => Kind::Refresh,
            Scenario::Introspect => Kind::Introspect,
            Scenario::Mixed { password_percent } => {
                // Spreads the password grants evenly: request k is one when
                // floor(k·p/100) steps up.
                let p = u64::from(password_percent);
                let k = vu.sent;
                if (k * p) / 100 != ((k + 1) * p) / 100 {
                    Kind::Password
                } else {
                    Kind::Refresh
                }
            }
        };
        // A virtual user whose token was refused gets a new one first.
        let kind = match kind {
            Kind::Refresh if vu.refresh_token.is_none() => Kind::Password,
            Kind::Introspect if vu.access_token.is_none() => self.introspect_with,
            k => k,
        };
        let request = self.build(kind, vu);
        vu.sent += 1;
        (kind, request)
    }

    fn build(&self, kind: Kind, vu: &VirtualUser) -> Request<Full<Bytes>> {
        let body = match kind {
            Kind::ClientCredentials => self.client_credentials_body.clone(),
            Kind::Password => {
                let user = self.users.offset + (vu.index + vu.sent * vu.stride) % self.users.count.max(1);
                let mut body = String::with_capacity(128);
                let _ = write!(
                    body,
                    "grant_type=password&username={}{user}&password={}{user}{}{}",
                    self.user_prefix,
                    self.password_prefix,
                    self.scope,
                    self.body_auth.expose()
                );
                Bytes::from(body)
            }
            Kind::Refresh => {
                let mut body = String::from("grant_type=refresh_token&refresh_token=");
                push_encoded(&mut body, vu.refresh_token.as_ref().map_or("", Secret::expose));
                body.push_str(&self.scope);
                body.push_str(self.body_auth.expose());
                Bytes::from(body)
            }
            Kind::Introspect => {
                // RFC 7662 §2.1.
                let mut body = String::from("token=");
                push_encoded(&mut body, vu.access_token.as_ref().map_or("", Secret::expose));
                body.push_str("&token_type_hint=access_token");
                body.push_str(self.body_auth.expose());
                Bytes::from(body)
            }
        };
        let uri = match kind {
            Kind::Introspect => self.introspection_path.clone(),
            _ => self.token_path.clone(),
        };
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        if let Some(authorization) = &self.authorization {
            headers.insert(AUTHORIZATION, authorization.clone());
        }
        if let (Some(dpop), false) = (&self.dpop, kind == Kind::Introspect) {
            headers.insert("dpop", dpop.take());
        }
        request
    }

    /// Judges `reply` to a `kind` request of `vu`, and keeps the tokens it
    /// carries that the scenario needs.
    pub fn absorb(&self, vu: &mut VirtualUser, kind: Kind, reply: &Reply) -> Outcome {
        let fields: Option<Fields<'_>> = serde_json::from_slice(&reply.body).ok();
        if !(200..300).contains(&reply.status) {
            // A refused refresh token is gone for good; a 503 is not final.
            if kind == Kind::Refresh && matches!(reply.status, 400 | 401) {
                vu.refresh_token = None;
            }
            return Outcome::Status {
                status: reply.status,
                oauth_error: fields.and_then(|f| f.error).map(Cow::into_owned),
            };
        }
        let unexpected = |what| Outcome::Unexpected { status: reply.status, what };
        let Some(fields) = fields else {
            return unexpected("body is not a JSON object");
        };
        if kind == Kind::Introspect {
            // RFC 7662 §2.2: `active` is required.
            return match fields.active {
                Some(true) => Outcome::Success,
                Some(false) => unexpected("active=false"),
                None => unexpected("no active member"),
            };
        }
        let Some(access_token) = fields.access_token else {
            return unexpected("no access_token");
        };
        if self.scenario == Scenario::Introspect {
            vu.access_token = Some(Secret::new(access_token.into_owned()));
        }
        let keeps_refresh = matches!(self.scenario, Scenario::Refresh | Scenario::Mixed { .. });
        if keeps_refresh && matches!(kind, Kind::Password | Kind::Refresh) {
            match fields.refresh_token {
                Some(token) => vu.refresh_token = Some(Secret::new(token.into_owned())),
                // Without rotation the old refresh token stays valid.
                None if kind == Kind::Refresh => {}
                None => return unexpected("no refresh_token"),
            }
        }
        Outcome::Success
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn spec(scenario: Scenario, auth: ClientAuth) -> WorkloadSpec {
        WorkloadSpec {
            scenario,
            token_path: Uri::from_static("/token"),
            introspection_path: Uri::from_static("/introspect"),
            client_id: "lt".into(),
            client_secret: Some(Secret::new("s&1".into())),
            auth,
            users: Users { count: 3, offset: 0, user_prefix: "user".into(), password_prefix: "pass-".into() },
            scope: Some("read write".into()),
            introspect_with: Kind::Password,
            dpop: None,
        }
    }

    fn workload(scenario: Scenario, auth: ClientAuth) -> Workload {
        Workload::new(spec(scenario, auth), HeaderValue::from_static("127.0.0.1:1")).unwrap()
    }

    async fn body(request: Request<Full<Bytes>>) -> String {
        let bytes = request.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply { status, body: Bytes::from(body.to_owned()) }
    }

    #[tokio::test]
    async fn password_round_robin_with_body_auth() {
        let w = workload(Scenario::Password, ClientAuth::Body);
        let mut vu = VirtualUser::new(1, 2);
        let mut bodies = Vec::new();
        for _ in 0..3 {
            let (kind, request) = w.next(&mut vu);
            assert_eq!(kind, Kind::Password);
            assert!(request.headers().get(AUTHORIZATION).is_none());
            assert_eq!(request.uri(), "/token");
            bodies.push(body(request).await);
        }
        // Virtual user 1 of 2 takes users 1, 3 % 3 = 0, 5 % 3 = 2.
        assert_eq!(
            bodies,
            [
                "grant_type=password&username=user1&password=pass-1&scope=read+write&client_id=lt&client_secret=s%261",
                "grant_type=password&username=user0&password=pass-0&scope=read+write&client_id=lt&client_secret=s%261",
                "grant_type=password&username=user2&password=pass-2&scope=read+write&client_id=lt&client_secret=s%261",
            ]
        );
    }

    #[tokio::test]
    async fn user_offset_shifts_the_users() {
        let mut spec = spec(Scenario::Password, ClientAuth::Basic);
        spec.users = Users { count: 2, offset: 7, user_prefix: "u".into(), password_prefix: "wrong-".into() };
        let w = Workload::new(spec, HeaderValue::from_static("127.0.0.1:1")).unwrap();
        let mut vu = VirtualUser::new(0, 1);
        let mut bodies = Vec::new();
        for _ in 0..3 {
            bodies.push(body(w.next(&mut vu).1).await);
        }
        assert_eq!(
            bodies,
            [
                "grant_type=password&username=u7&password=wrong-7&scope=read+write",
                "grant_type=password&username=u8&password=wrong-8&scope=read+write",
                "grant_type=password&username=u7&password=wrong-7&scope=read+write",
            ]
        );
    }

    #[tokio::test]
    async fn refresh_uses_the_rotated_token() {
        let w = workload(Scenario::Refresh, ClientAuth::Basic);
        let mut vu = VirtualUser::new(0, 1);
        let (kind, request) = w.setup(&mut vu).unwrap();
        assert_eq!(kind, Kind::Password);
        let auth = request.headers().get(AUTHORIZATION).unwrap();
        assert!(auth.is_sensitive());
        assert_eq!(auth, "Basic bHQ6cyUyNjE=");
        let ok = reply(200, r#"{"access_token":"a1","refresh_token":"r1"}"#);
        assert_eq!(w.absorb(&mut vu, kind, &ok), Outcome::Success);
        assert!(w.setup(&mut vu).is_none());

        let (kind, request) = w.next(&mut vu);
        assert_eq!(kind, Kind::Refresh);
        assert_eq!(body(request).await, "grant_type=refresh_token&refresh_token=r1&scope=read+write");
        let rotated = reply(200, r#"{"access_token":"a2","refresh_token":"r2"}"#);
        assert_eq!(w.absorb(&mut vu, kind, &rotated), Outcome::Success);
        let (_, request) = w.next(&mut vu);
        assert!(body(request).await.contains("refresh_token=r2"));

        // A refused refresh token sends the user back to a password grant.
        let refused = reply(400, r#"{"error":"invalid_grant","error_description":"x"}"#);
        assert_eq!(
            w.absorb(&mut vu, Kind::Refresh, &refused),
            Outcome::Status { status: 400, oauth_error: Some("invalid_grant".into()) }
        );
        assert_eq!(w.next(&mut vu).0, Kind::Password);
    }

    #[test]
    fn debug_hides_the_secret() {
        let w = workload(Scenario::ClientCredentials, ClientAuth::Body);
        let shown = format!("{w:?} {:?}", spec(Scenario::Password, ClientAuth::Body));
        assert!(!shown.contains("s&1") && !shown.contains("s%261"), "{shown}");
    }

    #[test]
    fn mixed_spreads_password_grants() {
        let w = workload(Scenario::Mixed { password_percent: 10 }, ClientAuth::Basic);
        let mut vu = VirtualUser::new(0, 1);
        vu.refresh_token = Some(Secret::new("r".into()));
        let kinds: Vec<Kind> = (0..100).map(|_| w.next(&mut vu).0).collect();
        assert_eq!(kinds.iter().filter(|k| **k == Kind::Password).count(), 10);
        assert_eq!(kinds[9], Kind::Password);
        assert_eq!(kinds[0], Kind::Refresh);
    }

    #[tokio::test]
    async fn introspection_per_rfc_7662() {
        let w = workload(Scenario::Introspect, ClientAuth::Basic);
        let mut vu = VirtualUser::new(0, 1);
        let (kind, _) = w.setup(&mut vu).unwrap();
        let ok = reply(200, r#"{"access_token":"a b","token_type":"bearer"}"#);
        assert_eq!(w.absorb(&mut vu, kind, &ok), Outcome::Success);
        let (kind, request) = w.next(&mut vu);
        assert_eq!(kind, Kind::Introspect);
        assert_eq!(request.uri(), "/introspect");
        assert_eq!(body(request).await, "token=a+b&token_type_hint=access_token");
        assert_eq!(w.absorb(&mut vu, kind, &reply(200, r#"{"active":true,"scope":"read"}"#)), Outcome::Success);
        assert_eq!(
            w.absorb(&mut vu, kind, &reply(200, r#"{"active":false}"#)),
            Outcome::Unexpected { status: 200, what: "active=false" }
        );
    }

    #[test]
    fn judges_bodies() {
        let w = workload(Scenario::ClientCredentials, ClientAuth::Basic);
        let mut vu = VirtualUser::new(0, 1);
        let k = Kind::ClientCredentials;
        assert_eq!(
            w.absorb(&mut vu, k, &reply(200, "not json")),
            Outcome::Unexpected { status: 200, what: "body is not a JSON object" }
        );
        assert_eq!(
            w.absorb(&mut vu, k, &reply(200, r#"{"token_type":"bearer"}"#)),
            Outcome::Unexpected { status: 200, what: "no access_token" }
        );
        assert_eq!(
            w.absorb(&mut vu, k, &reply(503, "<html>busy</html>")),
            Outcome::Status { status: 503, oauth_error: None }
        );
    }
}
