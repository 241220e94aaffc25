//! Platforms (`os/arch[/variant]`) as containerd compares them when it picks a manifest from an
//! image index.
//!
//! Mirrors containerd 1.6 `platforms`: [`Platform::parse`] is `platforms.Parse` for the
//! `os/arch[/variant]` form, [`Platform::normalize`] is `Normalize`/`normalizeArch`, and
//! [`Platform::matches`] is `platforms.Only(p).Match` — the platform itself plus what
//! `platformVector` lets it run (older amd64 levels and `386`; older arm variants; arm64 also
//! arm/v8 down to arm/v5).

use std::fmt;

/// An OCI platform.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: String,
}

/// Why a `--platform` value could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input} is not a platform: {problem}; write os/arch or os/arch/variant, e.g. linux/amd64 or linux/arm64/v8", input = crate::config::quote(.input)
)]
pub struct PlatformError {
    input: String,
    problem: &'static str,
}

impl Platform {
    /// The platform of the machine pullprobe runs on (containerd's `platforms.DefaultSpec`),
    /// normalised. The arm variant of 32-bit arm is taken as v7 (containerd reads it from
    /// /proc/cpuinfo; v7 is by far the most common).
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "arm" => "arm",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            "mips64" if cfg!(target_endian = "little") => "mips64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_owned(),
            architecture: architecture.to_owned(),
            variant: String::new(),
        }
        .normalize()
    }

    /// Parses `os/arch[/variant]` (containerd `platforms.Parse`, three-part form).
    ///
    /// # Errors
    /// When the value does not have two or three non-empty, lowercase-able parts.
    pub fn parse(input: &str) -> Result<Self, PlatformError> {
        let err = |problem| PlatformError {
            input: input.to_owned(),
            problem,
        };
        let parts: Vec<&str> = input.trim().split('/').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(err("it needs two or three parts separated by '/'"));
        }
        let ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !parts.iter().all(|p| ok(p)) {
            return Err(err(
                "each part must be letters, digits, '_' or '-' and not empty",
            ));
        }
        Ok(Platform {
            os: parts[0].to_owned(),
            architecture: parts[1].to_owned(),
            variant: parts.get(2).copied().unwrap_or_default().to_owned(),
        }
        .normalize())
    }

    /// containerd `platforms.Normalize`.
    pub fn normalize(mut self) -> Self {
        self.os = self.os.to_ascii_lowercase();
        if self.os == "macos" {
            self.os = "darwin".to_owned();
        }
        let arch = self.architecture.to_ascii_lowercase();
        let variant = self.variant.to_ascii_lowercase();
        let (arch, variant) = match arch.as_str() {
            "i386" => ("386".to_owned(), String::new()),
            "x86_64" | "x86-64" | "amd64" => (
                "amd64".to_owned(),
                if variant == "v1" {
                    String::new()
                } else {
                    variant
                },
            ),
            "aarch64" | "arm64" => (
                "arm64".to_owned(),
                if matches!(variant.as_str(), "8" | "v8") {
                    String::new()
                } else {
                    variant
                },
            ),
            "armhf" => ("arm".to_owned(), "v7".to_owned()),
            "armel" => ("arm".to_owned(), "v6".to_owned()),
            "arm" => (
                "arm".to_owned(),
                match variant.as_str() {
                    "" | "7" => "v7".to_owned(),
                    "5" | "6" | "8" => format!("v{variant}"),
                    _ => variant,
                },
            ),
            _ => (arch, variant),
        };
        self.architecture = arch;
        self.variant = variant;
        self
    }

    /// containerd `platformVector`: this platform, then what it can also run, best first.
    fn vector(&self) -> Vec<Platform> {
        let mut out = vec![self.clone()];
        let with = |arch: &str, variant: String| Platform {
            os: self.os.clone(),
            architecture: arch.to_owned(),
            variant,
        };
        match self.architecture.as_str() {
            "amd64" => {
                if let Some(level) = version(&self.variant).filter(|v| *v > 1) {
                    out.extend((1..level).rev().map(|v| with("amd64", format!("v{v}"))));
                }
                out.push(with("386", String::new()));
            }
            "arm" => {
                if let Some(level) = version(&self.variant).filter(|v| *v > 5) {
                    out.extend((5..level).rev().map(|v| with("arm", format!("v{v}"))));
                }
            }
            "arm64" => {
                let variant = if self.variant.is_empty() {
                    "v8".to_owned()
                } else {
                    self.variant.clone()
                };
                out.extend(with("arm", variant).vector());
            }
            _ => {}
        }
        out
    }

    /// Whether a node of this platform would pick a manifest for `candidate`
    /// (containerd `platforms.Only(self).Match(candidate)`).
    pub fn matches(&self, candidate: &Platform) -> bool {
        let candidate = candidate.clone().normalize();
        self.clone()
            .normalize()
            .vector()
            .into_iter()
            // `NewMatcher` normalises each platform of the vector (amd64 `v1` reads as no variant).
            .any(|p| p.normalize() == candidate)
    }
}

fn version(variant: &str) -> Option<u32> {
    variant.strip_prefix('v').unwrap_or(variant).parse().ok()
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    // containerd platforms/database.go normalizeArch
    #[test]
    fn normalize_arch_as_containerd() {
        assert_eq!(p("linux/x86_64").to_string(), "linux/amd64");
        assert_eq!(p("linux/amd64/v1").to_string(), "linux/amd64");
        assert_eq!(p("linux/aarch64/v8").to_string(), "linux/arm64");
        assert_eq!(p("linux/arm").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/armhf").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/armel").to_string(), "linux/arm/v6");
        assert_eq!(p("linux/i386").to_string(), "linux/386");
        assert_eq!(p("Linux/AMD64").to_string(), "linux/amd64");
    }

    // containerd platforms/compare.go Only + platformVector
    #[test]
    fn only_matches_the_platform_vector() {
        let amd64 = p("linux/amd64");
        assert!(amd64.matches(&p("linux/amd64")));
        assert!(amd64.matches(&p("linux/386")));
        assert!(!amd64.matches(&p("linux/arm64")));
        assert!(!amd64.matches(&p("windows/amd64")));
        assert!(!amd64.matches(&p("linux/amd64/v2")), "v2 needs a v2 node");
        assert!(p("linux/amd64/v3").matches(&p("linux/amd64/v2")));
        assert!(p("linux/amd64/v3").matches(&p("linux/amd64")));
        let arm64 = p("linux/arm64");
        assert!(arm64.matches(&p("linux/arm64/v8")));
        assert!(arm64.matches(&p("linux/arm/v7")));
        assert!(arm64.matches(&p("linux/arm/v5")));
        assert!(!arm64.matches(&p("linux/amd64")));
        let armv6 = p("linux/arm/v6");
        assert!(armv6.matches(&p("linux/arm/v5")));
        assert!(!armv6.matches(&p("linux/arm/v7")));
    }

    #[test]
    fn bad_platforms_say_how_to_write_one() {
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/amd 64"] {
            let e = Platform::parse(bad).unwrap_err().to_string();
            assert!(e.contains("linux/amd64"), "{bad}: {e}");
        }
    }

    #[test]
    fn host_platform_is_normalised() {
        let h = Platform::host();
        assert_eq!(h.clone().normalize(), h);
        assert!(h.matches(&h));
    }
}
