//! A throwaway certificate authority (feature `pki`): what `agora local --secure` and the
//! tests make their certificates with (rcgen, `ring`), and the check that decides whether
//! certificates already on disk can be used again.
//!
//! Keys are ECDSA P-256. Leaf certificates name their holder in their subject alternative
//! names (IP addresses as IP entries), which is what clients verify servers by and what
//! [`ClientIdentity`](super::ClientIdentity) reports of clients.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};

/// Certificates start to be valid this long before they are made, for clocks a little behind.
const BACKDATE: Duration = Duration::from_secs(3_600);

/// A certificate and its private key, PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What a leaf certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    /// Both: an agent serves its HTTP and presents the same certificate to the master.
    ServerAndClient,
}

/// A CA that signs leaf certificates, valid from `now` for `valid_for`.
#[derive(Debug)]
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    now: SystemTime,
    valid_for: Duration,
}

impl Authority {
    /// A new CA named `name`, with a fresh key.
    pub fn new(name: &str, now: SystemTime, valid_for: Duration) -> Result<Authority, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        set_validity(&mut params, now, valid_for)?;
        let cert = params.self_signed(&key)?;
        Ok(Authority { issuer: Issuer::new(params, key), cert_pem: cert.pem(), now, valid_for })
    }

    /// The CA's certificate, PEM: what clients are given with `--tls-ca`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for `names` (DNS names or IP addresses; the first is its common name).
    pub fn issue(&self, names: &[&str], usage: Usage) -> Result<Issued, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name = DistinguishedName::new();
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::ServerAndClient => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        };
        set_validity(&mut params, self.now, self.valid_for)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

fn set_validity(params: &mut CertificateParams, now: SystemTime, valid_for: Duration) -> Result<(), rcgen::Error> {
    let now_s = unix_seconds(now);
    let at = |secs: u64| {
        time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
            .map_err(|_| rcgen::Error::InvalidAsn1String(rcgen::InvalidAsn1String::PrintableString("date".into())))
    };
    params.not_before = at(now_s.saturating_sub(BACKDATE.as_secs()))?;
    params.not_after = at(now_s.saturating_add(valid_for.as_secs()))?;
    Ok(())
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// True when `cert_pem` was signed by the CA in `ca_pem` and is valid for `usage` at
/// `at` (and, for a server, for `name`): a certificate that may be used again until then.
pub fn still_valid(ca_pem: &[u8], cert_pem: &[u8], usage: Usage, name: Option<&str>, at: SystemTime) -> bool {
    let (Ok(ca), Ok(cert)) = (CertificateDer::from_pem_slice(ca_pem), CertificateDer::from_pem_slice(cert_pem)) else {
        return false;
    };
    let Ok(anchor) = webpki::anchor_from_trusted_cert(&ca) else {
        return false;
    };
    let Ok(leaf) = webpki::EndEntityCert::try_from(&cert) else {
        return false;
    };
    let time = UnixTime::since_unix_epoch(Duration::from_secs(unix_seconds(at)));
    let key_usages = match usage {
        Usage::Server => vec![webpki::KeyUsage::server_auth()],
        Usage::Client => vec![webpki::KeyUsage::client_auth()],
        Usage::ServerAndClient => vec![webpki::KeyUsage::server_auth(), webpki::KeyUsage::client_auth()],
    };
    let anchors = [anchor];
    let verifies = |key_usage| {
        leaf.verify_for_usage(webpki::ALL_VERIFICATION_ALGS, &anchors, &[], time, key_usage, None, None).is_ok()
    };
    if !key_usages.into_iter().all(verifies) {
        return false;
    }
    match name.map(rustls::pki_types::ServerName::try_from) {
        None => true,
        Some(Ok(name)) => leaf.verify_is_valid_for_subject_name(&name).is_ok(),
        Some(Err(_)) => false,
    }
}
