//! JWT verification: compact JWS with HS256, RS256 or ES256, keys from a
//! JWKS, and the registered claims (iss, aud, exp, nbf).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A JSON Web Key, as much of it as weft's verification needs.
#[derive(Deserialize, Clone, Debug)]
pub struct Jwk {
    #[serde(default)]
    pub kid: Option<String>,
    pub kty: String,
    #[serde(default)]
    pub alg: Option<String>,
    /// oct: the secret, base64url.
    #[serde(default)]
    pub k: Option<String>,
    /// RSA modulus and exponent, base64url.
    #[serde(default)]
    pub n: Option<String>,
    #[serde(default)]
    pub e: Option<String>,
    /// EC P-256 point, base64url.
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default)]
    pub y: Option<String>,
}

/// A JWK Set.
#[derive(Deserialize, Clone, Debug, Default)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// What the claims must satisfy.
pub struct Expect<'a> {
    pub issuer: Option<&'a str>,
    pub audiences: &'a [String],
    pub clock_skew_s: u64,
    pub required_claims: &'a [String],
    pub now_s: u64,
}

fn b64(part: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| "not base64url".to_string())
}

/// Verifies `token` against `keys` and `expect`; the claims on success, a
/// reason (for `error_description`) otherwise.
pub fn verify(token: &str, keys: &Jwks, expect: &Expect<'_>) -> Result<Value, String> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the token is not a compact JWS (three dot-separated parts)".into());
    };
    let header: Value = serde_json::from_slice(&b64(header)?)
        .map_err(|_| "the token header is not JSON".to_string())?;
    let alg = header["alg"].as_str().unwrap_or_default();
    let kid = header["kid"].as_str();
    let signature = b64(signature)?;
    let signed = &token[..token.len() - token.rsplit('.').next().map_or(0, str::len) - 1];

    let candidates: Vec<&Jwk> = keys
        .keys
        .iter()
        .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
        .filter(|k| k.alg.as_deref().map_or(true, |a| a == alg))
        .collect();
    if candidates.is_empty() {
        return Err(match kid {
            Some(kid) => format!("no key `{kid}` for {alg}"),
            None => format!("no key for {alg}"),
        });
    }
    let verified = candidates
        .iter()
        .any(|key| check_signature(alg, key, signed.as_bytes(), &signature).unwrap_or(false));
    if !verified {
        return Err("the signature does not verify".into());
    }

    let claims: Value = serde_json::from_slice(&b64(payload)?)
        .map_err(|_| "the token payload is not JSON".to_string())?;
    let skew = expect.clock_skew_s;
    if claims["exp"]
        .as_u64()
        .map_or(false, |exp| expect.now_s > exp.saturating_add(skew))
    {
        return Err("the token has expired".into());
    }
    if claims["nbf"]
        .as_u64()
        .map_or(false, |nbf| expect.now_s.saturating_add(skew) < nbf)
    {
        return Err("the token is not valid yet".into());
    }
    if expect
        .issuer
        .map_or(false, |issuer| claims["iss"].as_str() != Some(issuer))
    {
        return Err("the token's issuer is not accepted".into());
    }
    if !expect.audiences.is_empty() {
        let audiences: Vec<&str> = match &claims["aud"] {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !audiences
            .iter()
            .any(|a| expect.audiences.iter().any(|w| w == a))
        {
            return Err("the token's audience is not accepted".into());
        }
    }
    for claim in expect.required_claims {
        if claims.get(claim).map_or(true, Value::is_null) {
            return Err(format!("the token lacks the claim `{claim}`"));
        }
    }
    Ok(claims)
}

fn check_signature(alg: &str, key: &Jwk, signed: &[u8], signature: &[u8]) -> Result<bool, String> {
    let field = |v: &Option<String>| v.as_deref().ok_or("incomplete key").map(b64);
    match (alg, key.kty.as_str()) {
        ("HS256", "oct") => {
            let secret = field(&key.k)??;
            let mut mac = Hmac::<Sha256>::new_from_slice(&secret).map_err(|e| e.to_string())?;
            mac.update(signed);
            Ok(mac.verify_slice(signature).is_ok())
        }
        ("RS256", "RSA") => {
            use rsa::pkcs1v15::{Signature, VerifyingKey};
            use rsa::signature::Verifier;
            let n = rsa::BigUint::from_bytes_be(&field(&key.n)??);
            let e = rsa::BigUint::from_bytes_be(&field(&key.e)??);
            let public = rsa::RsaPublicKey::new(n, e).map_err(|e| e.to_string())?;
            let verifying = VerifyingKey::<Sha256>::new(public);
            let signature = Signature::try_from(signature).map_err(|e| e.to_string())?;
            Ok(verifying.verify(signed, &signature).is_ok())
        }
        ("ES256", "EC") => {
            use p256::ecdsa::signature::Verifier;
            use p256::ecdsa::{Signature, VerifyingKey};
            if key.crv.as_deref().is_some_and(|c| c != "P-256") {
                return Ok(false);
            }
            let mut point = vec![4u8];
            point.extend(field(&key.x)??);
            point.extend(field(&key.y)??);
            let verifying = VerifyingKey::from_sec1_bytes(&point).map_err(|e| e.to_string())?;
            let signature = Signature::from_slice(signature).map_err(|e| e.to_string())?;
            Ok(verifying.verify(signed, &signature).is_ok())
        }
        _ => Ok(false),
    }
}

/// The SHA-256 of `text`, lower-case hex (how API keys are configured).
pub fn sha256_hex(text: &[u8]) -> String {
    Sha256::digest(text)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
