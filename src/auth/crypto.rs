//! The cryptography behind `jsonwebtoken`: `ring`, the library rustls already uses here.
//!
//! `jsonwebtoken` parses tokens and checks their claims (`exp`, `nbf`, `iss`, `aud`, the
//! algorithm named in the header); the signatures themselves it leaves to a
//! [`CryptoProvider`]. Rather than bring in a second crypto stack (RustCrypto or aws-lc), this
//! module provides one on `ring`, for exactly the algorithms Rohrpost accepts: HS256 (HMAC,
//! compared in constant time), RS256 (PKCS#1 v1.5, 2048 to 8192-bit keys) and ES256 (P-256).
//! Anything else is refused before any key is looked at.
//!
//! Signing is here too, for tests and tools that make tokens; the server only verifies.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{Error as SignatureError, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::{hmac, rand, signature};

/// The provider: `ring` for HS256, RS256 and ES256, nothing else.
static RING: CryptoProvider = CryptoProvider {
    signer_factory,
    verifier_factory,
    key_utils: KeyUtils::new_unimplemented(),
};

/// Makes [`RING`] the process's provider (once; later calls do nothing). Called before any
/// token is verified or made.
pub fn install() {
    // Fails only when a provider is installed already: this one, by an earlier call.
    let _ = RING.install_default();
}

/// A verifier of one algorithm with one key.
enum RingVerifier {
    Hs256(hmac::Key),
    /// RS256 or ES256 with the key's DER bytes (PKCS#1 RSAPublicKey, or the uncompressed point).
    Public(Algorithm, signature::UnparsedPublicKey<Vec<u8>>),
    Rs256Components(signature::RsaPublicKeyComponents<Vec<u8>>),
}

fn verifier_factory(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    let family = match algorithm {
        Algorithm::HS256 => AlgorithmFamily::Hmac,
        Algorithm::RS256 => AlgorithmFamily::Rsa,
        Algorithm::ES256 => AlgorithmFamily::Ec,
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    };
    if key.family() != family {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let verifier = match (algorithm, key.kind()) {
        (Algorithm::HS256, DecodingKeyKind::SecretOrDer(secret)) => {
            RingVerifier::Hs256(hmac::Key::new(hmac::HMAC_SHA256, secret))
        }
        (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { n, e }) => {
            RingVerifier::Rs256Components(signature::RsaPublicKeyComponents {
                n: n.clone(),
                e: e.clone(),
            })
        }
        (Algorithm::RS256, DecodingKeyKind::SecretOrDer(der)) => RingVerifier::Public(
            Algorithm::RS256,
            signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, der.clone()),
        ),
        (Algorithm::ES256, DecodingKeyKind::SecretOrDer(point)) => RingVerifier::Public(
            Algorithm::ES256,
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point.clone()),
        ),
        _ => return Err(ErrorKind::InvalidKeyFormat.into()),
    };
    Ok(Box::new(verifier))
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, message: &[u8], tag: &Vec<u8>) -> std::result::Result<(), SignatureError> {
        let verified = match self {
            RingVerifier::Hs256(key) => hmac::verify(key, message, tag),
            RingVerifier::Public(_, key) => key.verify(message, tag),
            RingVerifier::Rs256Components(key) => {
                key.verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, tag)
            }
        };
        verified.map_err(|_| SignatureError::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        match self {
            RingVerifier::Hs256(_) => Algorithm::HS256,
            RingVerifier::Public(algorithm, _) => *algorithm,
            RingVerifier::Rs256Components(_) => Algorithm::RS256,
        }
    }
}

/// A signer of one algorithm with one private key (tests and tools).
enum RingSigner {
    Hs256(hmac::Key),
    Rs256(signature::RsaKeyPair),
    Es256(signature::EcdsaKeyPair),
}

fn signer_factory(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    let der = key.as_bytes();
    let signer = match (algorithm, key.family()) {
        (Algorithm::HS256, AlgorithmFamily::Hmac) => {
            RingSigner::Hs256(hmac::Key::new(hmac::HMAC_SHA256, der))
        }
        (Algorithm::RS256, AlgorithmFamily::Rsa) => RingSigner::Rs256(
            signature::RsaKeyPair::from_der(der)
                .map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?,
        ),
        (Algorithm::ES256, AlgorithmFamily::Ec) => RingSigner::Es256(
            signature::EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                der,
                &rand::SystemRandom::new(),
            )
            .map_err(|_| ErrorKind::InvalidEcdsaKey)?,
        ),
        (Algorithm::HS256 | Algorithm::RS256 | Algorithm::ES256, _) => {
            return Err(ErrorKind::InvalidAlgorithm.into())
        }
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    };
    Ok(Box::new(signer))
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, SignatureError> {
        let rng = rand::SystemRandom::new();
        match self {
            RingSigner::Hs256(key) => Ok(hmac::sign(key, message).as_ref().to_vec()),
            RingSigner::Rs256(pair) => {
                let mut tag = vec![0; pair.public().modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut tag)
                    .map_err(|_| SignatureError::new())?;
                Ok(tag)
            }
            RingSigner::Es256(pair) => pair
                .sign(&rng, message)
                .map(|tag| tag.as_ref().to_vec())
                .map_err(|_| SignatureError::new()),
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        match self {
            RingSigner::Hs256(_) => Algorithm::HS256,
            RingSigner::Rs256(_) => Algorithm::RS256,
            RingSigner::Es256(_) => Algorithm::ES256,
        }
    }
}
