//! Bundles: built from a directory, read back with every hash checked,
//! signed and verified; every way an archive can be bad is refused.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::path::Path;

use weft_bundle::{Bundle, BundleError, PublicKey, SigningKey};

const MODULE_A: &[u8] = b"\0asm\x01\0\0\0a";
const MODULE_B: &[u8] = b"\0asm\x01\0\0\0b";

fn source_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.wasm"), MODULE_A).unwrap();
    std::fs::write(dir.path().join("b.wasm"), MODULE_B).unwrap();
    std::fs::write(
        dir.path().join("bundle.yaml"),
        r#"
name: shop-policy
version: 1.4.0
labels: {env: prod}
plugins:
  - name: auth
    module: a.wasm
    configuration: {issuer: "https://id.example.com"}
    failure_policy: fail_closed
  - name: hello
    module: b.wasm
    configuration: '{"header": "x-hello", "value": "v2"}'
"#,
    )
    .unwrap();
    dir
}

fn built() -> Bundle {
    Bundle::from_dir(source_dir().path()).unwrap()
}

/// An archive with exactly these entries.
fn archive_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut archive = tar::Builder::new(gz);
    for (name, content) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive.append_data(&mut header, name, *content).unwrap();
    }
    archive.into_inner().unwrap().finish().unwrap()
}

/// The entries of an archive.
fn entries_of(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_str().unwrap().to_string();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        out.push((name, content));
    }
    out
}

fn as_refs(entries: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    entries
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_slice()))
        .collect()
}

#[test]
fn a_built_bundle_names_its_modules_by_hash_and_survives_the_archive() {
    let bundle = built();
    let archive = bundle.to_archive().unwrap();
    assert_eq!(
        archive,
        built().to_archive().unwrap(),
        "builds are reproducible"
    );
    let names: Vec<String> = entries_of(&archive).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 3);
    assert_eq!(names[0], "manifest.json");
    assert!(
        names[1..]
            .iter()
            .all(|n| n.starts_with("modules/") && n.ends_with(".wasm"))
    );

    let back = Bundle::from_archive(&archive).unwrap();
    assert_eq!(back.digest(), bundle.digest());
    assert!(back.digest().starts_with("sha256:"));
    assert_eq!(back.manifest.name, "shop-policy");
    assert_eq!(back.manifest.labels["env"], "prod");
    let auth = &back.manifest.plugins[0];
    assert_eq!(back.module(auth).unwrap(), MODULE_A);
    assert_eq!(back.module(&back.manifest.plugins[1]).unwrap(), MODULE_B);
    assert_eq!(
        auth.configuration.to_bytes(),
        built().manifest.plugins[0].configuration.to_bytes()
    );
    assert_eq!(
        back.manifest.plugins[1].configuration.to_bytes(),
        br#"{"header": "x-hello", "value": "v2"}"#
    );
}

#[test]
fn signatures_verify_against_trusted_keys_only() {
    let (_, stored) = SigningKey::generate().unwrap();
    let key = SigningKey::parse(&stored).unwrap();
    let (other, _) = SigningKey::generate().unwrap();
    let mut bundle = built();
    assert!(matches!(
        bundle.verify(&[key.public_key()]),
        Err(BundleError::Unsigned { .. })
    ));
    bundle.sign(&key);
    let signed = Bundle::from_archive(&bundle.to_archive().unwrap()).unwrap();
    assert_eq!(
        signed
            .verify(&[other.public_key(), key.public_key()])
            .unwrap(),
        key.public_key()
    );
    let err = signed.verify(&[other.public_key()]).unwrap_err();
    assert!(matches!(err, BundleError::UntrustedKey { .. }), "{err}");
    assert!(err.to_string().contains(&key.public_key().id()), "{err}");
    assert_eq!(
        PublicKey::parse(&key.public_key().encode()).unwrap(),
        key.public_key()
    );
}

#[test]
fn a_changed_manifest_breaks_the_signature() {
    let (key, _) = SigningKey::generate().unwrap();
    let mut bundle = built();
    bundle.sign(&key);
    let mut entries = entries_of(&bundle.to_archive().unwrap());
    let manifest = &mut entries
        .iter_mut()
        .find(|(n, _)| n == "manifest.json")
        .unwrap()
        .1;
    let text = String::from_utf8(manifest.clone())
        .unwrap()
        .replace("1.4.0", "1.4.1");
    *manifest = text.into_bytes();
    let tampered = Bundle::from_archive(&archive_of(&as_refs(&entries))).unwrap();
    let err = tampered.verify(&[key.public_key()]).unwrap_err();
    assert!(matches!(err, BundleError::BadSignature { .. }), "{err}");
}

#[test]
fn bad_archives_are_refused_with_the_reason() {
    let entries = entries_of(&built().to_archive().unwrap());
    let (manifest, module, other) = (&entries[0], &entries[1], &entries[2]);

    let err = Bundle::from_archive(b"not a gzip at all").unwrap_err();
    assert!(matches!(err, BundleError::Corrupt(_)), "{err}");

    let changed = archive_of(&[
        ("manifest.json", &manifest.1),
        (&module.0, b"other bytes"),
        (&other.0, &other.1),
    ]);
    let err = Bundle::from_archive(&changed).unwrap_err();
    assert!(matches!(err, BundleError::HashMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&module.0), "{err}");

    let missing = archive_of(&[("manifest.json", &manifest.1), (&other.0, &other.1)]);
    let err = Bundle::from_archive(&missing).unwrap_err();
    assert!(err.to_string().contains("not in the archive"), "{err}");

    let stray = archive_of(&[("manifest.json", &manifest.1), ("etc/passwd", b"x")]);
    let err = Bundle::from_archive(&stray).unwrap_err();
    assert!(err.to_string().contains("unexpected entry"), "{err}");

    let err = Bundle::from_archive(&archive_of(&[])).unwrap_err();
    assert!(err.to_string().contains("no manifest.json"), "{err}");

    let huge = vec![0u8; (weft_bundle::MAX_ARCHIVE_BYTES + 1) as usize];
    assert!(matches!(
        Bundle::from_archive(&huge),
        Err(BundleError::TooLarge { .. })
    ));
}

#[test]
fn bad_source_directories_name_the_problem() {
    let dir = source_dir();
    let manifest = dir.path().join("bundle.yaml");
    std::fs::write(
        &manifest,
        "name: x\nversion: '1'\nplugins:\n  - name: a\n    modul: a.wasm\n",
    )
    .unwrap();
    let err = Bundle::from_dir(dir.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("bundle.yaml: field `plugins[0].modul`"),
        "{err}"
    );

    std::fs::write(
        &manifest,
        "name: x\nversion: '1'\nplugins:\n  - {name: a, module: gone.wasm}\n",
    )
    .unwrap();
    let err = Bundle::from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("gone.wasm"), "{err}");

    std::fs::write(
        &manifest,
        "name: x\nversion: '1'\nplugins:\n  - {name: a, module: a.wasm}\n  - {name: a, module: b.wasm}\n",
    )
    .unwrap();
    let err = Bundle::from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("used twice"), "{err}");

    // Capabilities are the proxy's to grant: a bundle asking for them is
    // refused when it is built, as every proxy would refuse it.
    for grant in [
        "allowed_clusters: [c]",
        "allowed_host_functions: [proxy_log]",
    ] {
        std::fs::write(
            &manifest,
            format!("name: x\nversion: '1'\nplugins:\n  - {{name: a, module: a.wasm, {grant}}}\n"),
        )
        .unwrap();
        let err = Bundle::from_dir(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("plugins[0] (`a`): `allowed_host_functions` and `allowed_clusters` are granted by the proxy's own config"),
            "{err}"
        );
    }

    let err = Bundle::from_dir(Path::new("/nonexistent")).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/bundle.yaml"),
        "{err}"
    );
}

#[test]
fn names_and_versions_that_cannot_name_a_file_are_refused() {
    let dir = source_dir();
    let manifest = dir.path().join("bundle.yaml");
    // The CLI writes NAME-VERSION.bundle.tar.gz: neither may climb out of
    // the directory or name another.
    for (name, version, problem) in [
        ("../escaped", "1", "`name` `../escaped` starts with `.`"),
        ("bad/name", "1", "`name` `bad/name` has `/`"),
        ("ok", "../../etc", "`version` `../../etc` starts with `.`"),
        ("ok", "1/2", "`version` `1/2` has `/`"),
        ("two words", "1", "`name` `two words` has ` `"),
        ("", "1", "`name` is empty"),
    ] {
        std::fs::write(
            &manifest,
            format!(
                "name: '{name}'\nversion: '{version}'\nplugins:\n  - {{name: a, module: a.wasm}}\n"
            ),
        )
        .unwrap();
        let err = Bundle::from_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains(problem), "{name} {version}: {err}");
    }
    std::fs::write(
        &manifest,
        "name: shop_policy-2\nversion: 1.4.0-rc.1+build.7\nplugins:\n  - {name: a, module: a.wasm}\n",
    )
    .unwrap();
    Bundle::from_dir(dir.path()).unwrap();
}

#[test]
fn a_manifest_with_a_byte_order_mark_reads_whole() {
    let dir = source_dir();
    let manifest = dir.path().join("bundle.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("\u{feff}{}", text.trim_start())).unwrap();
    let bundle = Bundle::from_dir(dir.path()).unwrap();
    assert_eq!(bundle.manifest.name, "shop-policy");
}

#[test]
fn a_trusted_key_is_read_from_a_file_or_its_text_and_a_missing_file_says_so() {
    let (_, stored) = SigningKey::generate().unwrap();
    let public = SigningKey::parse(&stored).unwrap().public_key();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("release.pub");
    std::fs::write(&file, format!("{}\n", public.encode())).unwrap();
    assert_eq!(PublicKey::read(file.to_str().unwrap()).unwrap(), public);
    assert_eq!(PublicKey::read(&public.encode()).unwrap(), public);

    let missing = dir.path().join("none.pub");
    let err = PublicKey::read(missing.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is neither a file (none by that name) nor a base64 public key"),
        "{err}"
    );
    std::fs::write(&file, "not a key").unwrap();
    let err = PublicKey::read(file.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("release.pub: public key is not base64"),
        "{err}"
    );
}
