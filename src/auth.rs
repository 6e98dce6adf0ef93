//! Bearer JWT authentication and the caller's role.
//!
//! Keys come from configuration: an HS256 shared secret, and RS256 / ES256 public keys, each
//! optionally named by a `kid` that tokens select with their header. A token is accepted only
//! with the algorithm of the key it selects (no `none`, no HS/RS confusion), and `exp` (required)
//! and `nbf` are checked, as is `aud` when an audience is configured.
//!
//! With no key configured the service runs in **sandbox mode**: requests without a token act as
//! a healthcare worker (as PDS's sandbox does), and tokens, when sent, are verified against a
//! development HS256 key created on first start and kept beside the database
//! (`<db>.jwt-dev-key`), so that `pds-facade token --db <db>` mints tokens the server accepts.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::case::OdsCode;
use crate::domain::{NhsNumber, Role};

/// PDS's scope for application-restricted access.
pub const SCOPE_APPLICATION_RESTRICTED: &str =
    "urn:nhsd:apim:app:level3:personal-demographics-service";
/// PDS's scopes for healthcare workers (CIS2 at AAL2/AAL3, NHS Identity at AAL3).
pub const SCOPES_HEALTHCARE_WORKER: [&str; 3] = [
    "urn:nhsd:apim:user-nhs-cis2:aal3:personal-demographics-service",
    "urn:nhsd:apim:user-nhs-cis2:aal2:personal-demographics-service",
    "urn:nhsd:apim:user-nhs-id:aal3:personal-demographics-service",
];
/// pds-facade's own scope for the National Back Office.
pub const SCOPE_BACK_OFFICE: &str = "urn:pds-facade:back-office";
/// pds-facade's own scope for Primary Care Support England.
pub const SCOPE_PCSE: &str = "urn:pds-facade:pcse";
/// pds-facade's own scope for GP practice staff (the token's `ods` claim names the practice).
pub const SCOPE_PRACTICE: &str = "urn:pds-facade:practice";

/// PDS's scopes for patient access (NHS login), by proof level: only P9 reads or changes
/// anything; P5 and P0 tokens authenticate but every patient route refuses them (403).
pub const SCOPE_PATIENT_P9: &str = "urn:nhsd:apim:user-nhs-login:P9:personal-demographics-service";
pub const SCOPE_PATIENT_P5: &str = "urn:nhsd:apim:user-nhs-login:P5:personal-demographics-service";
pub const SCOPE_PATIENT_P0: &str = "urn:nhsd:apim:user-nhs-login:P0:personal-demographics-service";
/// The NHS login vectors of trust PDS accepts for patient access (P9: identity verified in
/// person or by photo ID and a check of the patient's details).
pub const P9_VECTORS_OF_TRUST: [&str; 3] = ["P9.Cp.Cd", "P9.Cp.Ck", "P9.Cm"];

/// The scope a minted token carries for a role (a patient's: the P9 one; see
/// [`KeySet::mint_patient`] for the others).
pub fn scope_for(role: Role) -> &'static str {
    match role {
        Role::Patient => SCOPE_PATIENT_P9,
        Role::ApplicationRestricted => SCOPE_APPLICATION_RESTRICTED,
        Role::HealthcareWorker => SCOPES_HEALTHCARE_WORKER[0],
        Role::BackOffice => SCOPE_BACK_OFFICE,
        Role::Pcse => SCOPE_PCSE,
        Role::Practice => SCOPE_PRACTICE,
    }
}

/// The most privileged role a `scope` claim grants, if any. Scopes are separated by single
/// spaces (RFC 6749 §3.3: `scope-token *( SP scope-token )`), nothing else: a tab or a
/// non-breaking space is part of a scope, so `a\tb` is one unknown scope, not two.
pub fn role_from_scope(scope: &str) -> Option<Role> {
    let scopes: Vec<&str> = scope.split(' ').collect();
    if scopes.contains(&SCOPE_BACK_OFFICE) {
        Some(Role::BackOffice)
    } else if scopes.contains(&SCOPE_PCSE) {
        Some(Role::Pcse)
    } else if scopes.contains(&SCOPE_PRACTICE) {
        Some(Role::Practice)
    } else if scopes.iter().any(|s| SCOPES_HEALTHCARE_WORKER.contains(s)) {
        Some(Role::HealthcareWorker)
    } else if scopes.contains(&SCOPE_APPLICATION_RESTRICTED) {
        Some(Role::ApplicationRestricted)
    } else if scopes
        .iter()
        .any(|s| [SCOPE_PATIENT_P9, SCOPE_PATIENT_P5, SCOPE_PATIENT_P0].contains(s))
    {
        Some(Role::Patient)
    } else {
        None
    }
}

/// What a patient-access token says about its patient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatientAccess {
    /// The patient's NHS number (the token's `nhs_number` claim).
    pub nhs_number: NhsNumber,
    /// Identity proven to P9: the P9 scope and a P9 vector of trust (`vot`). Anything less
    /// authenticates but may do nothing (PDS: 403 ACCESS_DENIED).
    pub p9: bool,
}

impl PatientAccess {
    /// From a patient token's `scope`, `nhs_number` and `vot` claims; `None` when the NHS
    /// number is missing or not a valid one (the token is then refused, 401).
    fn from_claims(scope: &str, nhs_number: Option<&str>, vot: Option<&str>) -> Option<Self> {
        let nhs_number = NhsNumber::parse(nhs_number?).ok()?;
        let p9 = scope.split(' ').any(|s| s == SCOPE_PATIENT_P9)
            && vot.is_some_and(|v| P9_VECTORS_OF_TRUST.contains(&v));
        Some(PatientAccess { nhs_number, p9 })
    }
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    /// The token's `sub`, or `anonymous` for a sandbox request without a token.
    pub subject: String,
    /// The practice a `practice` token acts for (its `ods` claim); `None` for other roles.
    pub ods: Option<OdsCode>,
    /// The patient a `patient` token acts for; `None` for other roles.
    pub patient: Option<PatientAccess>,
}

impl Caller {
    pub fn sandbox() -> Caller {
        Caller {
            role: Role::HealthcareWorker,
            subject: "anonymous".into(),
            ods: None,
            patient: None,
        }
    }

    /// The NHS number whose record a patient-access caller may read and update: `None` for a
    /// patient below P9 (who may do nothing) and for every other role.
    pub fn own_record(&self) -> Option<NhsNumber> {
        self.patient.as_ref().filter(|p| p.p9).map(|p| p.nhs_number)
    }
}

/// What the service reads from a verified token (jsonwebtoken checks exp, nbf and aud itself;
/// `exp` is read again here so that only a whole number of seconds is accepted).
#[derive(Debug, Deserialize)]
struct TokenClaims {
    sub: String,
    exp: u64,
    #[serde(default)]
    scope: String,
    /// The practice's ODS code (required for the practice role).
    #[serde(default)]
    ods: Option<String>,
    /// The patient's NHS number (NHS login's ID-token claim; required for the patient role).
    #[serde(default)]
    nhs_number: Option<serde_json::Value>,
    /// NHS login's vector of trust, e.g. `P9.Cp.Cd` (the patient role needs a P9 one).
    #[serde(default)]
    vot: Option<serde_json::Value>,
}

/// The longest a token may still be valid for by default (`--jwt-max-ttl`).
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// What `token` writes.
#[derive(Debug, Serialize)]
struct Claims {
    sub: String,
    scope: String,
    exp: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ods: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nhs_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vot: Option<String>,
}

/// Why a request was not authenticated; each becomes 401 ACCESS_DENIED.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Missing Authorization header")]
    MissingHeader,
    #[error("Empty Authorization header")]
    EmptyHeader,
    #[error("Missing access token")]
    MissingToken,
    #[error("Invalid Access Token")]
    InvalidToken,
    /// The token is valid but grants no role here (403, not 401).
    #[error("the access token grants no personal-demographics-service scope")]
    NoRole,
}

/// Key configuration, from flags or environment (see `pds-facade serve --help`).
#[derive(Clone, Debug, clap::Args)]
pub struct KeyConfig {
    /// File holding the HS256 shared secret.
    #[arg(long, env = "PDS_JWT_HS256_SECRET_FILE")]
    pub jwt_hs256_secret_file: Option<PathBuf>,
    /// The HS256 shared secret itself (prefer the file form).
    #[arg(long, env = "PDS_JWT_HS256_SECRET", hide_env_values = true)]
    pub jwt_hs256_secret: Option<String>,
    /// An RS256 or ES256 public key (PEM) that verifies tokens, as `PATH` or `KID=PATH`; repeatable.
    #[arg(
        long = "jwt-public-key",
        env = "PDS_JWT_PUBLIC_KEYS",
        value_delimiter = ','
    )]
    pub jwt_public_keys: Vec<String>,
    /// The `kid` of the HS256 secret (tokens without a `kid` may still use it).
    #[arg(long, env = "PDS_JWT_HS256_KID")]
    pub jwt_hs256_kid: Option<String>,
    /// Required `aud` claim, if set (a token without `aud` is then refused).
    #[arg(long, env = "PDS_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// The longest a token may still be valid for: a token whose `exp` is further ahead is
    /// refused (e.g. 24h, 8h).
    #[arg(long, env = "PDS_JWT_MAX_TTL", default_value = "24h")]
    pub jwt_max_ttl: humantime::Duration,
}

impl Default for KeyConfig {
    fn default() -> Self {
        KeyConfig {
            jwt_hs256_secret_file: None,
            jwt_hs256_secret: None,
            jwt_public_keys: Vec::new(),
            jwt_hs256_kid: None,
            jwt_audience: None,
            jwt_max_ttl: DEFAULT_MAX_TTL.into(),
        }
    }
}

struct VerifyKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// The keys the service verifies tokens with, and the one `token` signs with.
pub struct KeySet {
    keys: Vec<VerifyKey>,
    signer: Option<(Option<String>, EncodingKey)>,
    audience: Option<String>,
    max_ttl: Duration,
    sandbox: bool,
}

impl KeySet {
    /// Builds the key set; with no key configured, sandbox mode with the development key kept
    /// beside `db` (created if missing).
    pub fn resolve(config: &KeyConfig, db: &Path) -> Result<KeySet, String> {
        KeySet::resolve_with(config, || dev_key(db))
    }

    /// Whether `config` configures no key (sandbox mode).
    pub fn is_sandbox_config(config: &KeyConfig) -> bool {
        config.jwt_hs256_secret.is_none()
            && config.jwt_hs256_secret_file.is_none()
            && config.jwt_public_keys.is_empty()
    }

    /// [`KeySet::resolve`] with the development key from `dev_key`, asked for only in sandbox
    /// mode (a store shared by several nodes keeps it in the database).
    pub fn resolve_with(
        config: &KeyConfig,
        dev_key: impl FnOnce() -> Result<Vec<u8>, String>,
    ) -> Result<KeySet, String> {
        let mut keys = Vec::new();
        let mut signer = None;
        let secret = match (&config.jwt_hs256_secret_file, &config.jwt_hs256_secret) {
            (Some(path), _) => Some(
                std::fs::read(path)
                    .map_err(|e| format!("cannot read the HS256 secret {}: {e}", path.display()))?
                    .trim_ascii()
                    .to_vec(),
            ),
            (None, Some(s)) => Some(s.as_bytes().to_vec()),
            (None, None) => None,
        };
        for spec in &config.jwt_public_keys {
            let (kid, path) = match spec.split_once('=') {
                Some((kid, path)) => (Some(kid.to_string()), path),
                None => (None, spec.as_str()),
            };
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read the public key {path}: {e}"))?;
            let (alg, key) = match DecodingKey::from_rsa_pem(&pem) {
                Ok(k) => (Algorithm::RS256, k),
                Err(_) => (
                    Algorithm::ES256,
                    DecodingKey::from_ec_pem(&pem).map_err(|e| {
                        format!("{path} is not an RSA or EC public key in PEM: {e}")
                    })?,
                ),
            };
            keys.push(VerifyKey { kid, alg, key });
        }
        let sandbox = secret.is_none() && keys.is_empty();
        let secret = match secret {
            Some(s) => Some(s),
            None if sandbox => Some(dev_key()?),
            None => None,
        };
        if let Some(secret) = secret {
            if secret.len() < 32 {
                return Err("the HS256 secret must be at least 32 bytes".into());
            }
            keys.push(VerifyKey {
                kid: config.jwt_hs256_kid.clone(),
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(&secret),
            });
            signer = Some((
                config.jwt_hs256_kid.clone(),
                EncodingKey::from_secret(&secret),
            ));
        }
        Ok(KeySet {
            keys,
            signer,
            audience: config.jwt_audience.clone(),
            max_ttl: config.jwt_max_ttl.into(),
            sandbox,
        })
    }

    /// Sandbox mode: no key configured.
    pub fn is_sandbox(&self) -> bool {
        self.sandbox
    }

    /// Authenticates a request from its `Authorization` header value.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Caller, AuthError> {
        let Some(header) = header else {
            return if self.sandbox {
                Ok(Caller::sandbox())
            } else {
                Err(AuthError::MissingHeader)
            };
        };
        let header = std::str::from_utf8(header)
            .map_err(|_| AuthError::InvalidToken)?
            .trim();
        if header.is_empty() {
            return Err(AuthError::EmptyHeader);
        }
        let token = match header.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            None if header.eq_ignore_ascii_case("bearer") => "",
            _ => return Err(AuthError::InvalidToken),
        };
        if token.is_empty() {
            return Err(AuthError::MissingToken);
        }
        self.verify(token)
    }

    fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        // the key is chosen by kid (or, without one, by algorithm) and dictates the algorithm
        let key = self
            .keys
            .iter()
            .find(|k| match &header.kid {
                Some(kid) => k.kid.as_deref() == Some(kid.as_str()),
                None => k.alg == header.alg,
            })
            .ok_or(AuthError::InvalidToken)?;
        if key.alg != header.alg {
            return Err(AuthError::InvalidToken);
        }
        let mut validation = Validation::new(key.alg);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        match &self.audience {
            Some(aud) => {
                // with an audience configured, a token must name it: one without `aud` is
                // not meant for this service
                validation.set_required_spec_claims(&["exp", "sub", "aud"]);
                validation.set_audience(&[aud]);
            }
            None => {
                validation.set_required_spec_claims(&["exp", "sub"]);
                validation.validate_aud = false;
            }
        }
        let data =
            jsonwebtoken::decode::<TokenClaims>(token, &key.key, &validation).map_err(|e| {
                tracing::debug!(error = %e, "token rejected");
                AuthError::InvalidToken
            })?;
        let claims = data.claims;
        if claims.sub.trim().is_empty() {
            tracing::debug!("token rejected: empty sub");
            return Err(AuthError::InvalidToken);
        }
        // a token valid for longer than the service allows is refused: a leaked long-lived
        // token must not stay useful
        let latest = now_secs().saturating_add(self.max_ttl.as_secs() + LEEWAY_SECS);
        if claims.exp > latest {
            tracing::debug!("token rejected: exp beyond the longest lifetime allowed");
            return Err(AuthError::InvalidToken);
        }
        let role = role_from_scope(&claims.scope).ok_or(AuthError::NoRole)?;
        // a practice token names its practice, well formed; other roles act for no practice
        let ods = match (role, claims.ods.as_deref().map(OdsCode::parse)) {
            (Role::Practice, Some(Ok(ods))) => Some(ods),
            (Role::Practice, _) => {
                tracing::debug!("token rejected: a practice token without a valid ods claim");
                return Err(AuthError::InvalidToken);
            }
            _ => None,
        };
        // a patient token names its patient by a valid NHS number; its level decides what it
        // may do (see `Caller::own_record`)
        let patient = match role {
            Role::Patient => Some(
                PatientAccess::from_claims(
                    &claims.scope,
                    claims.nhs_number.as_ref().and_then(|v| v.as_str()),
                    claims.vot.as_ref().and_then(|v| v.as_str()),
                )
                .ok_or_else(|| {
                    tracing::debug!(
                        "token rejected: a patient token without a valid nhs_number claim"
                    );
                    AuthError::InvalidToken
                })?,
            ),
            _ => None,
        };
        Ok(Caller {
            role,
            subject: claims.sub,
            ods,
            patient,
        })
    }

    /// Mints a token for `role` with the HS256 key (the configured secret or the sandbox key).
    pub fn mint(&self, role: Role, subject: &str, ttl: Duration) -> Result<String, String> {
        self.mint_for(role, subject, ttl, None)
    }

    /// [`KeySet::mint`] with the practice's ODS code (required for, and only for, the
    /// practice role).
    pub fn mint_for(
        &self,
        role: Role,
        subject: &str,
        ttl: Duration,
        ods: Option<&str>,
    ) -> Result<String, String> {
        let ods = match (role, ods) {
            (Role::Practice, Some(code)) => Some(OdsCode::parse(code)?.to_string()),
            (Role::Practice, None) => {
                return Err("a practice token names its practice: add --ods <ODS code>".into())
            }
            (Role::Patient, _) => {
                return Err(
                    "a patient token names its patient: add --nhs-number <NHS number>".into(),
                )
            }
            (_, Some(_)) => return Err("--ods goes only with --role practice".into()),
            (_, None) => None,
        };
        self.sign(Claims {
            scope: scope_for(role).to_string(),
            ods,
            ..self.claims(subject, ttl)?
        })
    }

    /// Mints a patient-access token: the scope of the vector of trust's level (`P9.…` → the
    /// P9 scope, `P5.…` → P5, `P0.…` → P0), the `nhs_number` and `vot` claims.
    pub fn mint_patient(
        &self,
        subject: &str,
        ttl: Duration,
        nhs_number: &str,
        vot: &str,
    ) -> Result<String, String> {
        let nhs_number = NhsNumber::parse(nhs_number)
            .map_err(|_| format!("'{nhs_number}' is not a valid NHS number (--nhs-number)"))?;
        let scope = match vot.split('.').next() {
            Some("P9") => SCOPE_PATIENT_P9,
            Some("P5") => SCOPE_PATIENT_P5,
            Some("P0") => SCOPE_PATIENT_P0,
            _ => {
                return Err(format!(
                    "'{vot}' is not an NHS login vector of trust (--vot, e.g. P9.Cp.Cd, P5.Cm)"
                ))
            }
        };
        self.sign(Claims {
            scope: scope.to_string(),
            nhs_number: Some(nhs_number.to_string()),
            vot: Some(vot.to_string()),
            ..self.claims(subject, ttl)?
        })
    }

    /// The claims every minted token has, checked against the service's limits.
    fn claims(&self, subject: &str, ttl: Duration) -> Result<Claims, String> {
        if self.signer.is_none() {
            return Err(NO_SIGNER.into());
        }
        if subject.trim().is_empty() {
            return Err("the token subject (--sub) must not be empty".into());
        }
        if ttl > self.max_ttl {
            return Err(format!(
                "a token valid for {} would be refused: the longest lifetime allowed is {} (--jwt-max-ttl)",
                humantime::format_duration(ttl),
                humantime::format_duration(self.max_ttl)
            ));
        }
        let now = now_secs();
        Ok(Claims {
            sub: subject.to_string(),
            scope: String::new(),
            iat: now,
            exp: now + ttl.as_secs(),
            nbf: None,
            aud: self.audience.clone(),
            ods: None,
            nhs_number: None,
            vot: None,
        })
    }

    fn sign(&self, claims: Claims) -> Result<String, String> {
        let (kid, key) = self.signer.as_ref().ok_or(NO_SIGNER)?;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.clone();
        jsonwebtoken::encode(&header, &claims, key).map_err(|e| e.to_string())
    }
}

const NO_SIGNER: &str = "no HS256 secret is configured to sign with (RS256/ES256 tokens come from your identity provider)";

/// Clock skew allowed on `exp`, `nbf` and the lifetime limit.
const LEEWAY_SECS: u64 = 30;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh development key: 32 random bytes as hex.
pub fn fresh_dev_key() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The development key of a sandbox database: `<db>.jwt-dev-key`, 32 random bytes as hex,
/// created with owner-only permissions on first use.
pub fn dev_key(db: &Path) -> Result<Vec<u8>, String> {
    let mut name = db.as_os_str().to_owned();
    name.push(".jwt-dev-key");
    let path = PathBuf::from(name);
    if let Ok(existing) = std::fs::read(&path) {
        return Ok(existing.trim_ascii().to_vec());
    }
    let key = fresh_dev_key();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut f) => {
            std::io::Write::write_all(&mut f, key.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(key.into_bytes())
        }
        // another process created it first: use theirs
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(&path)
            .map(|k| k.trim_ascii().to_vec())
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!(
            "cannot create the development key {}: {e}",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sandbox() -> (tempfile::TempDir, KeySet) {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeySet::resolve(&KeyConfig::default(), &dir.path().join("x.redb")).unwrap();
        (dir, keys)
    }

    #[test]
    fn sandbox_accepts_no_token_and_its_own_tokens() {
        let (dir, keys) = sandbox();
        assert!(keys.is_sandbox());
        assert_eq!(keys.authenticate(None), Ok(Caller::sandbox()));
        let t = keys
            .mint(Role::BackOffice, "nbo-1", Duration::from_secs(60))
            .unwrap();
        let c = keys
            .authenticate(Some(format!("Bearer {t}").as_bytes()))
            .unwrap();
        assert_eq!((c.role, c.subject.as_str()), (Role::BackOffice, "nbo-1"));
        // the same database gets the same key
        let again = KeySet::resolve(&KeyConfig::default(), &dir.path().join("x.redb")).unwrap();
        assert!(again
            .authenticate(Some(format!("Bearer {t}").as_bytes()))
            .is_ok());
        // another database does not
        let (_d2, other) = sandbox();
        assert_eq!(
            other.authenticate(Some(format!("Bearer {t}").as_bytes())),
            Err(AuthError::InvalidToken)
        );
    }

    #[test]
    fn header_forms() {
        let (_d, keys) = sandbox();
        assert_eq!(keys.authenticate(Some(b"")), Err(AuthError::EmptyHeader));
        assert_eq!(
            keys.authenticate(Some(b"Bearer")),
            Err(AuthError::MissingToken)
        );
        assert_eq!(
            keys.authenticate(Some(b"Bearer ")),
            Err(AuthError::MissingToken)
        );
        assert_eq!(
            keys.authenticate(Some(b"Basic abc")),
            Err(AuthError::InvalidToken)
        );
        assert_eq!(
            keys.authenticate(Some(b"Bearer not.a.token")),
            Err(AuthError::InvalidToken)
        );
    }

    #[test]
    fn configured_secret_requires_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let config = KeyConfig {
            jwt_hs256_secret: Some("s".repeat(40)),
            ..Default::default()
        };
        let keys = KeySet::resolve(&config, &dir.path().join("x.redb")).unwrap();
        assert!(!keys.is_sandbox());
        assert_eq!(keys.authenticate(None), Err(AuthError::MissingHeader));
        let t = keys
            .mint(Role::HealthcareWorker, "dr", Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            keys.authenticate(Some(format!("Bearer {t}").as_bytes()))
                .unwrap()
                .role,
            Role::HealthcareWorker
        );
        assert!(
            !dir.path().join("x.redb.jwt-dev-key").exists(),
            "no dev key outside sandbox mode"
        );
    }

    #[test]
    fn expired_not_yet_valid_wrong_audience_and_alg_none() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "k".repeat(40);
        let config = KeyConfig {
            jwt_hs256_secret: Some(secret.clone()),
            jwt_audience: Some("pds".into()),
            ..Default::default()
        };
        let keys = KeySet::resolve(&config, &dir.path().join("x.redb")).unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let sign = |claims: serde_json::Value| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap()
        };
        let ok = sign(
            serde_json::json!({"sub": "a", "scope": SCOPE_BACK_OFFICE, "exp": now + 60, "aud": "pds"}),
        );
        assert!(keys
            .authenticate(Some(format!("Bearer {ok}").as_bytes()))
            .is_ok());
        for bad in [
            serde_json::json!({"sub": "a", "scope": SCOPE_BACK_OFFICE, "exp": now - 3600, "aud": "pds"}),
            serde_json::json!({"sub": "a", "scope": SCOPE_BACK_OFFICE, "exp": now + 60, "nbf": now + 3600, "aud": "pds"}),
            serde_json::json!({"sub": "a", "scope": SCOPE_BACK_OFFICE, "exp": now + 60, "aud": "other"}),
            serde_json::json!({"sub": "a", "scope": SCOPE_BACK_OFFICE, "aud": "pds"}),
        ] {
            let t = sign(bad.clone());
            assert_eq!(
                keys.authenticate(Some(format!("Bearer {t}").as_bytes())),
                Err(AuthError::InvalidToken),
                "{bad}"
            );
        }
        // alg none: header {"alg":"none"} with an empty signature
        use base64_like::encode as b64;
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(format!(
                r#"{{"sub":"a","scope":"{SCOPE_BACK_OFFICE}","exp":{},"aud":"pds"}}"#,
                now + 60
            )
            .as_bytes())
        );
        assert_eq!(
            keys.authenticate(Some(format!("Bearer {none}").as_bytes())),
            Err(AuthError::InvalidToken)
        );
        let no_scope =
            sign(serde_json::json!({"sub": "a", "scope": "openid", "exp": now + 60, "aud": "pds"}));
        assert_eq!(
            keys.authenticate(Some(format!("Bearer {no_scope}").as_bytes())),
            Err(AuthError::NoRole)
        );
    }

    #[test]
    fn practice_tokens_name_their_practice_and_case_roles_have_scopes() {
        let (_dir, keys) = sandbox();
        let as_caller = |t: String| keys.authenticate(Some(format!("Bearer {t}").as_bytes()));
        let minute = Duration::from_secs(60);
        let t = keys
            .mint_for(Role::Practice, "gp-1", minute, Some("Y12345"))
            .unwrap();
        let c = as_caller(t).unwrap();
        assert_eq!(
            (c.role, c.ods.as_ref().map(|o| o.as_str())),
            (Role::Practice, Some("Y12345"))
        );
        let c = as_caller(keys.mint(Role::Pcse, "pcse-1", minute).unwrap()).unwrap();
        assert_eq!((c.role, c.ods), (Role::Pcse, None));
        // minting refuses what the service would refuse
        assert!(keys.mint(Role::Practice, "gp-1", minute).is_err());
        assert!(keys
            .mint_for(Role::Practice, "gp-1", minute, Some("y12345"))
            .is_err());
        assert!(keys
            .mint_for(Role::Pcse, "p", minute, Some("Y12345"))
            .is_err());
        // a practice token without a well-formed ods claim is refused; other roles' ods is
        // ignored (they act for no practice)
        let (kid_key, now) = (
            dev_key(_dir.path().join("x.redb").as_path()).unwrap(),
            now_secs(),
        );
        let sign = |claims: serde_json::Value| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(&kid_key),
            )
            .unwrap()
        };
        for ods in [
            serde_json::json!(null),
            serde_json::json!("y1"),
            serde_json::json!(12345),
        ] {
            let t = sign(
                serde_json::json!({"sub": "a", "scope": SCOPE_PRACTICE, "exp": now + 60, "ods": ods}),
            );
            assert_eq!(as_caller(t), Err(AuthError::InvalidToken), "ods {ods}");
        }
        let t = sign(
            serde_json::json!({"sub": "a", "scope": SCOPE_PCSE, "exp": now + 60, "ods": "Y12345"}),
        );
        assert_eq!(as_caller(t).unwrap().ods, None);
        // the most privileged scope wins
        assert_eq!(
            role_from_scope(&format!("{SCOPE_PRACTICE} {SCOPE_PCSE}")),
            Some(Role::Pcse)
        );
        assert_eq!(
            role_from_scope(&format!("{} {SCOPE_PRACTICE}", SCOPES_HEALTHCARE_WORKER[0])),
            Some(Role::Practice)
        );
    }

    #[test]
    fn claims_are_held_to_the_letter() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "k".repeat(40);
        let config = KeyConfig {
            jwt_hs256_secret: Some(secret.clone()),
            jwt_audience: Some("pds".into()),
            ..Default::default()
        };
        let keys = KeySet::resolve(&config, &dir.path().join("x.redb")).unwrap();
        let now = now_secs();
        let check = |claims: serde_json::Value| {
            let t = jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap();
            keys.authenticate(Some(format!("Bearer {t}").as_bytes()))
                .map(|c| c.role)
        };
        let hcw = SCOPES_HEALTHCARE_WORKER[0];
        assert_eq!(
            check(serde_json::json!({"sub": "a", "scope": hcw, "exp": now + 60, "aud": "pds"})),
            Ok(Role::HealthcareWorker)
        );
        // an audience is configured: a token without one is not for this service
        assert_eq!(
            check(serde_json::json!({"sub": "a", "scope": hcw, "exp": now + 60})),
            Err(AuthError::InvalidToken)
        );
        // scopes are separated by single spaces only
        for joined in [
            format!("openid\t{SCOPE_BACK_OFFICE}"),
            format!("openid\u{a0}{SCOPE_BACK_OFFICE}"),
            format!("openid\n{SCOPE_BACK_OFFICE}"),
        ] {
            assert_eq!(
                check(
                    serde_json::json!({"sub": "a", "scope": joined, "exp": now + 60, "aud": "pds"})
                ),
                Err(AuthError::NoRole),
                "{joined:?}"
            );
        }
        assert_eq!(
            check(
                serde_json::json!({"sub": "a", "scope": format!("openid {SCOPE_BACK_OFFICE}"), "exp": now + 60, "aud": "pds"})
            ),
            Ok(Role::BackOffice)
        );
        // an empty subject, an exp that is not a whole number, an exp too far ahead
        for bad in [
            serde_json::json!({"sub": "", "scope": hcw, "exp": now + 60, "aud": "pds"}),
            serde_json::json!({"sub": "  ", "scope": hcw, "exp": now + 60, "aud": "pds"}),
            serde_json::json!({"sub": "a", "scope": hcw, "exp": (now + 60) as f64 + 0.5, "aud": "pds"}),
            serde_json::json!({"sub": "a", "scope": hcw, "exp": (now + 60).to_string(), "aud": "pds"}),
            serde_json::json!({"sub": "a", "scope": hcw, "exp": now + 25 * 3600, "aud": "pds"}),
        ] {
            assert_eq!(check(bad.clone()), Err(AuthError::InvalidToken), "{bad}");
        }
        assert_eq!(
            check(
                serde_json::json!({"sub": "a", "scope": hcw, "exp": now + 23 * 3600, "aud": "pds"})
            ),
            Ok(Role::HealthcareWorker)
        );
        // minting keeps to the same limits
        assert!(keys
            .mint(Role::HealthcareWorker, "a", Duration::from_secs(25 * 3600))
            .is_err());
        assert!(keys
            .mint(Role::HealthcareWorker, "", Duration::from_secs(60))
            .is_err());
        // the limit is configurable
        let short = KeySet::resolve(
            &KeyConfig {
                jwt_max_ttl: Duration::from_secs(600).into(),
                ..config.clone()
            },
            &dir.path().join("x.redb"),
        )
        .unwrap();
        let t = keys
            .mint(Role::HealthcareWorker, "a", Duration::from_secs(3600))
            .unwrap();
        assert_eq!(
            short.authenticate(Some(format!("Bearer {t}").as_bytes())),
            Err(AuthError::InvalidToken)
        );
    }

    #[test]
    fn patient_tokens_carry_their_nhs_number_and_level() {
        let (dir, keys) = sandbox();
        let as_caller = |t: String| keys.authenticate(Some(format!("Bearer {t}").as_bytes()));
        let minute = Duration::from_secs(60);
        let own = NhsNumber::parse("9991000003").unwrap();
        let c = as_caller(
            keys.mint_patient("nhs-login-1", minute, "9991000003", "P9.Cp.Cd")
                .unwrap(),
        )
        .unwrap();
        assert_eq!((c.role, c.own_record()), (Role::Patient, Some(own)));
        // lower levels authenticate but own nothing
        for vot in ["P5.Cm", "P0.Cm"] {
            let c = as_caller(keys.mint_patient("p", minute, "9991000003", vot).unwrap()).unwrap();
            assert_eq!((c.role, c.own_record()), (Role::Patient, None), "{vot}");
        }
        // minting refuses what the service would refuse
        assert!(keys.mint(Role::Patient, "p", minute).is_err());
        assert!(keys
            .mint_patient("p", minute, "9991000004", "P9.Cm")
            .is_err());
        assert!(keys.mint_patient("p", minute, "9991000003", "X9").is_err());
        let key = dev_key(dir.path().join("x.redb").as_path()).unwrap();
        let now = now_secs();
        let sign = |claims: serde_json::Value| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(&key),
            )
            .unwrap()
        };
        // the P9 scope needs a P9 vector of trust; a P9 vot does not lift a P5 scope
        for (scope, vot, p9) in [
            (SCOPE_PATIENT_P9, json!("P9.Cp.Cd"), true),
            (SCOPE_PATIENT_P9, json!("P9.Cp.Ck"), true),
            (SCOPE_PATIENT_P9, json!("P9.Cm"), true),
            (SCOPE_PATIENT_P9, json!("P5.Cp.Cd"), false),
            (SCOPE_PATIENT_P9, json!(null), false),
            (SCOPE_PATIENT_P9, json!(["P9.Cp.Cd"]), false),
            (SCOPE_PATIENT_P5, json!("P9.Cp.Cd"), false),
            (SCOPE_PATIENT_P0, json!("P0.Cm"), false),
        ] {
            let t = sign(json!({"sub": "a", "scope": scope, "exp": now + 60,
                "nhs_number": "9991000003", "vot": vot}));
            let c = as_caller(t).unwrap();
            assert_eq!(c.own_record().is_some(), p9, "{scope} {vot}");
        }
        // a patient token without a valid NHS number is not valid
        for nhs in [
            json!(null),
            json!("9991000004"),
            json!(9991000003u64),
            json!("999 100 0003"),
        ] {
            let t = sign(
                json!({"sub": "a", "scope": SCOPE_PATIENT_P9, "exp": now + 60,
                "nhs_number": nhs, "vot": "P9.Cp.Cd"}),
            );
            assert_eq!(as_caller(t), Err(AuthError::InvalidToken), "{nhs}");
        }
        // any other role's nhs_number claim is ignored
        let t = sign(
            json!({"sub": "a", "scope": SCOPES_HEALTHCARE_WORKER[0], "exp": now + 60,
            "nhs_number": "9991000003"}),
        );
        assert_eq!(as_caller(t).unwrap().patient, None);
        // patient access is the least a scope grants
        assert_eq!(
            role_from_scope(&format!(
                "{SCOPE_PATIENT_P9} {SCOPE_APPLICATION_RESTRICTED}"
            )),
            Some(Role::ApplicationRestricted)
        );
    }

    /// Unpadded base64url, enough to hand-craft a token.
    mod base64_like {
        pub fn encode(bytes: &[u8]) -> String {
            const A: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = chunk
                    .iter()
                    .enumerate()
                    .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
                for i in 0..=chunk.len() {
                    out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
    }

    #[test]
    fn scopes_to_roles() {
        assert_eq!(
            role_from_scope(
                "openid urn:nhsd:apim:user-nhs-cis2:aal3:personal-demographics-service"
            ),
            Some(Role::HealthcareWorker)
        );
        assert_eq!(
            role_from_scope(SCOPE_APPLICATION_RESTRICTED),
            Some(Role::ApplicationRestricted)
        );
        assert_eq!(
            role_from_scope(&format!(
                "{SCOPE_APPLICATION_RESTRICTED} {SCOPE_BACK_OFFICE}"
            )),
            Some(Role::BackOffice)
        );
        assert_eq!(role_from_scope("openid"), None);
    }
}
