//! The tiny initramfs: a newc cpio archive, gzip-compressed (every kernel we boot has
//! CONFIG_RD_GZIP), holding the init, the static zccheck, the kernel's modules and config.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use flate2::write::GzEncoder;
use vm_init::GuestConfig;

use crate::kernel::Kernel;

enum Entry {
    Dir(String),
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    CharDev {
        path: String,
        major: u32,
        minor: u32,
    },
}

/// Builds the initramfs of `kernel` at `out`.
pub fn build(
    out: &Path,
    kernel: &Kernel,
    init: &Path,
    zccheck: &Path,
    args: &[String],
) -> Result<()> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let mods_dir = format!("/lib/modules/{}", kernel.release);
    let mut entries = vec![];
    for d in [
        "/bin",
        "/dev",
        "/proc",
        "/sys",
        "/tmp",
        "/run",
        "/boot",
        "/zccheck-vm",
        "/lib",
        "/lib/modules",
    ] {
        entries.push(Entry::Dir(d.into()));
    }
    entries.push(Entry::Dir(mods_dir.clone()));
    // The kernel opens /dev/console for init's stdio before init can mount devtmpfs.
    entries.push(Entry::CharDev {
        path: "/dev/console".into(),
        major: 5,
        minor: 1,
    });
    entries.push(Entry::File {
        path: "/init".into(),
        mode: 0o755,
        data: read(init)?,
    });
    entries.push(Entry::File {
        path: vm_init::ZCCHECK_PATH.into(),
        mode: 0o755,
        data: read(zccheck)?,
    });
    let mut modules = Vec::new();
    for m in &kernel.modules {
        let name = m
            .file_name()
            .context("module without a file name")?
            .to_string_lossy();
        let path = format!("{mods_dir}/{name}");
        entries.push(Entry::File {
            path: path.clone(),
            mode: 0o644,
            data: read(m)?,
        });
        modules.push(path);
    }
    if let Some(c) = &kernel.config {
        // Where zccheck's KernelInfo looks, so reports carry the config excerpts.
        entries.push(Entry::File {
            path: format!("/boot/config-{}", kernel.release),
            mode: 0o644,
            data: read(c)?,
        });
    }
    let config = GuestConfig {
        label: kernel.label.clone(),
        modules,
        args: args.to_vec(),
    };
    entries.push(Entry::File {
        path: vm_init::CONFIG_PATH.into(),
        mode: 0o644,
        data: serde_json::to_vec_pretty(&config)?,
    });
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let gz = GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast());
    let gz = write_cpio(gz, &entries)?;
    gz.finish()?.flush()?;
    Ok(())
}

fn write_cpio<W: Write>(mut w: W, entries: &[Entry]) -> Result<W> {
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        let (path, b, data): (&str, _, &[u8]) = match e {
            Entry::Dir(p) => (
                p,
                cpio::newc::Builder::new(name(p)).mode(0o040755).nlink(2),
                &[],
            ),
            Entry::File { path, mode, data } => (
                path,
                cpio::newc::Builder::new(name(path))
                    .mode(0o100000 | mode)
                    .nlink(1),
                data,
            ),
            Entry::CharDev { path, major, minor } => (
                path,
                cpio::newc::Builder::new(name(path))
                    .mode(0o020600)
                    .nlink(1)
                    .rdev_major(*major)
                    .rdev_minor(*minor),
                &[],
            ),
        };
        let mut fw = b.ino(ino).write(w, data.len() as u32);
        fw.write_all(data)
            .with_context(|| format!("archiving {path}"))?;
        w = fw.finish()?;
    }
    Ok(cpio::newc::trailer(w)?)
}

/// cpio names are relative to the root.
fn name(path: &str) -> &str {
    path.trim_start_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_read_back_with_modes_and_contents() {
        let entries = vec![
            Entry::Dir("/bin".into()),
            Entry::CharDev {
                path: "/dev/console".into(),
                major: 5,
                minor: 1,
            },
            Entry::File {
                path: "/init".into(),
                mode: 0o755,
                data: b"hello".to_vec(),
            },
        ];
        let bytes = write_cpio(Vec::new(), &entries).unwrap();
        let mut r = cpio::NewcReader::new(bytes.as_slice()).unwrap();
        assert_eq!(r.entry().name(), "bin");
        assert_eq!(r.entry().mode(), 0o040755);
        r = cpio::NewcReader::new(r.finish().unwrap()).unwrap();
        assert_eq!(r.entry().name(), "dev/console");
        assert_eq!((r.entry().rdev_major(), r.entry().rdev_minor()), (5, 1));
        r = cpio::NewcReader::new(r.finish().unwrap()).unwrap();
        assert_eq!(r.entry().name(), "init");
        assert_eq!(r.entry().mode(), 0o100755);
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut data).unwrap();
        assert_eq!(data, b"hello");
        let r = cpio::NewcReader::new(r.finish().unwrap()).unwrap();
        assert!(r.entry().is_trailer());
    }
}
