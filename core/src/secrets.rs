//! The secrets an endpoint accepts, shared and changeable while the server runs.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, Guard};

use crate::scheme::StandardKey;
use crate::verify::{HmacSha256, keyed_mac};
use crate::{Clock, Secret, SystemClock};

/// How long a secret stays accepted after [`Secrets::rotate`] or [`Secrets::set`] made it
/// a previous one, by default: the sender signs with both secrets for about five minutes
/// after a rotation, and a retry signed just before it may arrive up to the five-minute
/// tolerance later, so ten minutes cover both with room to spare.
pub const DEFAULT_PREVIOUS_EXPIRY: Duration = Duration::from_secs(10 * 60);

/// A shared handle to the secrets a [`Verifier`](crate::Verifier) accepts: the current
/// one and any previous ones, each with its keyed HMAC state prepared when it was set.
///
/// Clones share the same secrets. The [`Gate`](crate::Gate), and through it both
/// adapters' middleware, reads them on every request without a lock (one atomic load of
/// an [`arc-swap`](arc_swap) pointer), so the app can change them at any time, from any
/// thread, while requests are served: a request sees either the old set or the new one,
/// never a mix. Changing secrets never touches the dedup store.
///
/// - [`rotate`](Self::rotate) makes a new secret the current one; the old current one
///   stays accepted as a previous one until it expires.
/// - [`set`](Self::set) replaces everything at once, as a reloaded secrets file does.
/// - [`remove_previous`](Self::remove_previous) and
///   [`clear_previous`](Self::clear_previous) end a rotation early.
///
/// A secret made previous by `rotate` or `set` expires
/// [`previous_expiry`](Self::previous_expiry) after that (default
/// [ten minutes](DEFAULT_PREVIOUS_EXPIRY)): from then on it no longer verifies, with no
/// background task (the deadline is compared with the clock when a request tries it).
/// Deadlines are kept on the clock's [monotonic](Clock::monotonic_millis) reading
/// ([`Instant`](std::time::Instant) for the system clock), so setting the wall clock
/// forward or back neither ends a rotation early nor prolongs it; a deadline given as a
/// wall-clock time ([`Expiry::At`], as a secrets file holds it) is converted once, when
/// it is given. [`replace`](Self::replace) sets secrets with such deadlines.
/// A previous secret given to the builder ([`previous_secret`](Self::previous_secret),
/// as the adapters' `previous_secret` does) does not expire, as before this handle
/// existed.
///
/// Secrets are zeroized when dropped (the last clone of a set of secrets drops them) and
/// `Debug` shows them masked.
///
/// ```
/// use mapping_webhooks::{Gate, MatchedSecret, Secret, Secrets, Signer};
///
/// let old = Secret::new("whsec_old_0123456789abcdef0123456789")?;
/// let new = Secret::new("whsec_new_fedcba9876543210fedcba9876")?;
/// let secrets = Secrets::new(old.clone());
/// let gate = Gate::from_secrets(secrets.clone());
///
/// // Later, while the server runs (for example on a reloaded secrets file):
/// secrets.rotate(new.clone());
///
/// let body = br#"{"eventId":"evt_1","type":"mapping.completed"}"#;
/// let verifier = gate.verifier();
/// let by_new = verifier.verify(Signer::new(new).sign_now(body), body)?;
/// let by_old = verifier.verify(Signer::new(old).sign_now(body), body)?;
/// assert_eq!(by_new.secret, MatchedSecret::Current);
/// assert_eq!(by_old.secret, MatchedSecret::Previous(0)); // until it expires
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Secrets {
    shared: Arc<Shared>,
}

struct Shared {
    ring: ArcSwap<Ring>,
    /// Serialises changes (reads never take it), so a rotate cannot lose a concurrent set.
    write: Mutex<()>,
}

/// One immutable set of secrets, swapped as a whole.
pub(crate) struct Ring {
    /// The current secret first, then the previous ones, in the order they are tried.
    pub(crate) keys: Box<[Key]>,
    pub(crate) clock: Arc<dyn Clock>,
    expiry: Duration,
}

#[derive(Clone)]
pub(crate) struct Key {
    secret: Secret,
    pub(crate) mac: HmacSha256,
    pub(crate) masked: String,
    /// When this previous secret stops verifying, in the clock's monotonic milliseconds
    /// ([`Clock::monotonic_millis`]); `None` for the current secret and for previous
    /// secrets given without an expiry.
    pub(crate) expires_at_ms: Option<u64>,
    /// The secret as Standard Webhooks and Svix read it (base64 decoded, or a public
    /// key): made at the first request of such a scheme, kept while the secret is held.
    standard: OnceLock<StandardKey>,
}

impl Key {
    fn new(secret: Secret, expires_at_ms: Option<u64>) -> Self {
        Self {
            mac: keyed_mac(&secret),
            masked: secret.masked(),
            secret,
            expires_at_ms,
            standard: OnceLock::new(),
        }
    }

    /// The secret as Standard Webhooks and Svix read it.
    #[inline]
    pub(crate) fn standard(&self) -> &StandardKey {
        self.standard.get_or_init(|| StandardKey::of(&self.secret))
    }

    fn live_at(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|deadline| now_ms < deadline)
    }
}

impl Secrets {
    /// A handle holding one secret, the current one, with the system clock and the
    /// default expiry for secrets that become previous ones.
    pub fn new(current: Secret) -> Self {
        Self::with_previous(current, None)
    }

    /// A handle holding `current` and, in one call, the previous secrets `previous`,
    /// tried in the order given: what [`new`](Self::new) followed by one
    /// [`previous_secret`](Self::previous_secret) per secret does. As there, the previous
    /// secrets given here do not expire: remove them with
    /// [`remove_previous`](Self::remove_previous) or
    /// [`clear_previous`](Self::clear_previous) once the rotation is over (a secret that
    /// should end by itself is given to [`replace`](Self::replace) with an [`Expiry`]). A
    /// secret given twice, or equal to `current`, is kept once, at its first place.
    ///
    /// ```
    /// use mapping_webhooks::{Gate, MatchedSecret, Secret, Secrets, Signer};
    ///
    /// let current = Secret::new("whsec_new_fedcba9876543210fedcba9876")?;
    /// let previous = Secret::new("whsec_old_0123456789abcdef0123456789")?;
    /// // Such as MAPPING_WEBHOOK_SECRET_PREVIOUS, when it is set.
    /// let secrets = Secrets::with_previous(current, Some(previous.clone()));
    /// assert_eq!(secrets.masked(), ["whsec_••••9876", "whsec_••••6789"]);
    ///
    /// let gate = Gate::from_secrets(secrets);
    /// let body = br#"{"eventId":"evt_1","type":"mapping.completed"}"#;
    /// let verified = gate.verifier().verify(Signer::new(previous).sign_now(body), body)?;
    /// assert_eq!(verified.secret, MatchedSecret::Previous(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_previous(current: Secret, previous: impl IntoIterator<Item = Secret>) -> Self {
        let mut keys = vec![Key::new(current, None)];
        for secret in previous {
            if !keys.iter().any(|k| same(&k.secret, &secret)) {
                keys.push(Key::new(secret, None));
            }
        }
        let ring = Ring {
            keys: keys.into_boxed_slice(),
            clock: Arc::new(SystemClock),
            expiry: DEFAULT_PREVIOUS_EXPIRY,
        };
        Self {
            shared: Arc::new(Shared {
                ring: ArcSwap::from_pointee(ring),
                write: Mutex::new(()),
            }),
        }
    }

    /// Also accepts `secret`, after the current one and the previous ones already held.
    /// A previous secret added here does not expire: remove it with
    /// [`remove_previous`](Self::remove_previous) once the rotation is over. Like every
    /// change, it applies to all clones of this handle.
    #[must_use]
    pub fn previous_secret(self, secret: Secret) -> Self {
        self.change(|ring, _| {
            let mut keys = ring.keys.to_vec();
            keys.retain(|k| !same(&k.secret, &secret));
            keys.push(Key::new(secret, None));
            keys
        });
        self
    }

    /// How long a secret stays accepted once [`rotate`](Self::rotate) or
    /// [`set`](Self::set) made it a previous one (default [`DEFAULT_PREVIOUS_EXPIRY`]).
    /// Applies to the secrets made previous after this call, in every clone.
    #[must_use]
    pub fn previous_expiry(self, expiry: Duration) -> Self {
        self.reconfigure(|ring| ring.expiry = expiry);
        self
    }

    /// Reads expiry deadlines from `clock` instead of the system clock (for tests).
    /// [`Verifier::clock`](crate::Verifier::clock) and the adapters' `clock` set this
    /// too, so one clock rules both the timestamp window and the expiry.
    #[must_use]
    pub fn clock(self, clock: impl Clock) -> Self {
        self.set_clock(Arc::new(clock));
        self
    }

    pub(crate) fn set_clock(&self, clock: Arc<dyn Clock>) {
        self.reconfigure(|ring| ring.clock = clock);
    }

    /// Makes `new` the current secret. The old current secret becomes the first
    /// previous one and expires after [`previous_expiry`](Self::previous_expiry); the
    /// other previous secrets keep their deadlines. If `new` was a previous secret it
    /// is now only the current one; if it already is the current one nothing changes.
    pub fn rotate(&self, new: Secret) {
        self.change(|ring, now_ms| {
            if same(&ring.keys[0].secret, &new) {
                return ring.keys.to_vec();
            }
            let deadline = Some(now_ms.saturating_add(millis(ring.expiry)));
            let mut keys = Vec::with_capacity(ring.keys.len() + 1);
            keys.push(Key::new(new.clone(), None));
            let mut old = ring.keys[0].clone();
            old.expires_at_ms = deadline;
            keys.push(old);
            keys.extend(
                ring.keys[1..]
                    .iter()
                    .filter(|k| !same(&k.secret, &new))
                    .cloned(),
            );
            keys
        });
        tracing::info!(secrets = ?self, "webhook secret rotated");
    }

    /// Replaces the secrets: `current`, then `previous` in the order given (the order in
    /// which they are tried). A previous secret this handle already held as a previous
    /// one keeps its deadline; any other one (the old current secret, or a secret new
    /// to this handle) expires [`previous_expiry`](Self::previous_expiry) from now. So
    /// setting the same list again, as a reloaded file does, extends nothing.
    pub fn set(&self, current: Secret, previous: impl IntoIterator<Item = Secret>) {
        let previous: Vec<Secret> = previous.into_iter().collect();
        self.change(|ring, now_ms| {
            let deadline = Some(now_ms.saturating_add(millis(ring.expiry)));
            let mut keys: Vec<Key> = Vec::with_capacity(previous.len() + 1);
            keys.push(Key::new(current.clone(), None));
            for secret in &previous {
                if keys.iter().any(|k| same(&k.secret, secret)) {
                    continue;
                }
                let held = ring.keys[1..].iter().find(|k| same(&k.secret, secret));
                keys.push(match held {
                    Some(key) => key.clone(),
                    None => Key::new(secret.clone(), deadline),
                });
            }
            keys
        });
        tracing::info!(secrets = ?self, "webhook secrets set");
    }

    /// Replaces the secrets with `current`, then `previous` in the order given, each
    /// previous secret with its own [`Expiry`]: what a reloaded secrets file does, whose
    /// lines say when each previous secret ends.
    ///
    /// - [`Expiry::At`]: at that wall-clock time (read on this handle's clock once, now;
    ///   a time already past drops the secret at once).
    /// - [`Expiry::After`]: [`previous_expiry`](Self::previous_expiry) after that time,
    ///   but never later than the deadline this handle already holds for the secret: a
    ///   reload does not prolong a rotation.
    /// - The old current secret, if it is not in the new list, stays accepted as the last
    ///   previous one for [`previous_expiry`](Self::previous_expiry) from now, as after
    ///   [`rotate`](Self::rotate): the secret in use is never dropped at once.
    pub fn replace(&self, current: Secret, previous: impl IntoIterator<Item = (Secret, Expiry)>) {
        let previous: Vec<(Secret, Expiry)> = previous.into_iter().collect();
        self.change(|ring, now_ms| {
            let wall_ms = ring.clock.now_millis();
            // A wall-clock time as a monotonic deadline: the time left, from now.
            let deadline = |at: Option<SystemTime>| {
                let at_ms = at.map_or(0, |t| {
                    t.duration_since(UNIX_EPOCH)
                        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                });
                now_ms.saturating_add(at_ms.saturating_sub(wall_ms))
            };
            let mut keys: Vec<Key> = Vec::with_capacity(previous.len() + 2);
            keys.push(Key::new(current.clone(), None));
            for (secret, expiry) in &previous {
                if keys.iter().any(|k| same(&k.secret, secret)) {
                    continue;
                }
                let ends = match *expiry {
                    Expiry::At(at) => deadline(Some(at)),
                    Expiry::After(since) => {
                        let ends = deadline(since.checked_add(ring.expiry));
                        let held = ring.keys[1..]
                            .iter()
                            .find(|k| same(&k.secret, secret))
                            .and_then(|k| k.expires_at_ms);
                        held.map_or(ends, |held| held.min(ends))
                    }
                };
                keys.push(Key::new(secret.clone(), Some(ends)));
            }
            let old = &ring.keys[0];
            if !keys.iter().any(|k| same(&k.secret, &old.secret)) {
                let mut old = old.clone();
                old.expires_at_ms = Some(now_ms.saturating_add(millis(ring.expiry)));
                keys.push(old);
            }
            keys
        });
        tracing::info!(secrets = ?self, "webhook secrets replaced");
    }

    /// Stops accepting the previous secret `secret`. Returns whether it was held (the
    /// current secret is never removed: [`rotate`](Self::rotate) or [`set`](Self::set)
    /// replace it).
    pub fn remove_previous(&self, secret: &Secret) -> bool {
        let mut removed = false;
        self.change(|ring, _| {
            let mut keys = ring.keys.to_vec();
            let before = keys.len();
            let mut index = 0;
            keys.retain(|k| {
                index += 1;
                index == 1 || !same(&k.secret, secret)
            });
            removed = keys.len() != before;
            keys
        });
        removed
    }

    /// Stops accepting every previous secret: the rotation is over.
    pub fn clear_previous(&self) {
        self.change(|ring, _| ring.keys[..1].to_vec());
    }

    /// The masked current secret, then the masked previous secrets still accepted, in
    /// the order they are tried: what a log line may show.
    pub fn masked(&self) -> Vec<String> {
        let ring = self.shared.ring.load();
        let now_ms = ring.clock.monotonic_millis();
        ring.keys
            .iter()
            .filter(|k| k.live_at(now_ms))
            .map(|k| k.masked.clone())
            .collect()
    }

    /// Refuses secrets that `scheme` (Standard Webhooks, Svix) cannot use: checked when
    /// a gate is built, so a typo is found at startup rather than as 401s.
    pub(crate) fn check_standard_keys(
        &self,
        scheme: crate::scheme::Scheme,
    ) -> Result<(), crate::ConfigError> {
        let ring = self.shared.ring.load();
        if ring.keys.iter().all(|k| k.standard().is_usable()) {
            Ok(())
        } else {
            Err(crate::ConfigError::SecretNotForScheme(scheme))
        }
    }

    /// The secrets as a request sees them: one atomic load, no lock.
    #[inline]
    pub(crate) fn load(&self) -> Guard<Arc<Ring>> {
        self.shared.ring.load()
    }

    /// Drops the previous secrets whose deadline has passed, so their memory is zeroized
    /// now rather than at the next change. Called when a request found one expired.
    pub(crate) fn prune_expired(&self) {
        self.change(|ring, _| ring.keys.to_vec());
    }

    /// Builds a new key list from the current ring and the clock's monotonic time, drops expired
    /// previous secrets from it, and swaps it in. Writers are serialised; readers keep
    /// the ring they loaded until they finish with it.
    fn change(&self, f: impl FnOnce(&Ring, u64) -> Vec<Key>) {
        let _write = self
            .shared
            .write
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let ring = self.shared.ring.load_full();
        let now_ms = ring.clock.monotonic_millis();
        let mut keys = f(&ring, now_ms);
        let mut index = 0;
        keys.retain(|k| {
            index += 1;
            index == 1 || k.live_at(now_ms)
        });
        self.shared.ring.store(Arc::new(Ring {
            keys: keys.into_boxed_slice(),
            clock: Arc::clone(&ring.clock),
            expiry: ring.expiry,
        }));
    }

    fn reconfigure(&self, f: impl FnOnce(&mut Ring)) {
        let _write = self
            .shared
            .write
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let ring = self.shared.ring.load_full();
        let mut next = Ring {
            keys: ring.keys.clone(),
            clock: Arc::clone(&ring.clock),
            expiry: ring.expiry,
        };
        f(&mut next);
        self.shared.ring.store(Arc::new(next));
    }
}

/// When a previous secret given to [`Secrets::replace`] stops verifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expiry {
    /// At this wall-clock time: converted once, when given, into a deadline that wall
    /// clock steps do not move. A time already past: the secret is not accepted.
    At(SystemTime),
    /// [`Secrets::previous_expiry`] after this wall-clock time (when the secret stopped
    /// being the current one, as far as is known: a secrets file's modification time for
    /// a line without a deadline), never later than a deadline already held.
    After(SystemTime),
}

impl From<Secret> for Secrets {
    fn from(current: Secret) -> Self {
        Self::new(current)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether two secrets are the same bytes, in time independent of where they differ.
fn same(a: &Secret, b: &Secret) -> bool {
    let (a, b) = (a.expose(), b.expose());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.shared.ring.load();
        let now_ms = ring.clock.monotonic_millis();
        // The current secret first, then the previous ones still accepted; masked.
        let keys: Vec<String> = ring
            .keys
            .iter()
            .filter(|k| k.live_at(now_ms))
            .map(|k| match k.expires_at_ms {
                Some(deadline) => format!(
                    "{} (expires in {} s)",
                    k.masked,
                    deadline.saturating_sub(now_ms).div_ceil(1000)
                ),
                None => k.masked.clone(),
            })
            .collect();
        f.debug_struct("Secrets")
            .field("keys", &keys)
            .field("previous_expiry", &ring.expiry)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ManualClock, MatchedSecret, Signer, Verifier, VerifyError};

    const A: &str = "whsec_aaaa_0123456789abcdef0123456789";
    const B: &str = "whsec_bbbb_0123456789abcdef0123456789";
    const C: &str = "whsec_cccc_0123456789abcdef0123456789";
    const NOW: u64 = 1_717_250_400;
    const BODY: &[u8] = br#"{"eventId":"evt_1","type":"mapping.completed"}"#;

    fn s(secret: &str) -> Secret {
        Secret::new(secret).unwrap()
    }

    fn check(v: &Verifier, secret: &str) -> Result<MatchedSecret, VerifyError> {
        v.verify_signature(Signer::new(s(secret)).sign(BODY, NOW), BODY)
            .map(|m| m.secret)
    }

    fn setup() -> (Secrets, Verifier, ManualClock) {
        let clock = ManualClock::at_secs(NOW);
        let secrets = Secrets::new(s(A));
        let verifier = Verifier::from_secrets(secrets.clone()).clock(clock.clone());
        (secrets, verifier, clock)
    }

    #[test]
    fn rotate_keeps_the_old_secret_until_it_expires() {
        let (secrets, v, clock) = setup();
        secrets.rotate(s(B));
        assert_eq!(check(&v, B), Ok(MatchedSecret::Current));
        assert_eq!(check(&v, A), Ok(MatchedSecret::Previous(0)));
        // The window check uses the same clock: keep the signatures inside it.
        clock.advance(DEFAULT_PREVIOUS_EXPIRY - Duration::from_millis(1));
        let v = v.tolerance(Duration::from_secs(3600));
        assert_eq!(check(&v, A), Ok(MatchedSecret::Previous(0)));
        clock.advance(Duration::from_millis(1));
        assert_eq!(check(&v, A), Err(VerifyError::SignatureMismatch));
        assert_eq!(check(&v, B), Ok(MatchedSecret::Current));
        // The request that found it expired dropped it.
        assert_eq!(secrets.load().keys.len(), 1);
    }

    /// Signed at the clock's wall time, so the window check passes whatever the step.
    fn check_now(
        v: &Verifier,
        clock: &ManualClock,
        secret: &str,
    ) -> Result<MatchedSecret, VerifyError> {
        v.verify_signature(Signer::new(s(secret)).sign(BODY, clock.now_secs()), BODY)
            .map(|m| m.secret)
    }

    #[test]
    fn a_wall_clock_step_neither_ends_nor_prolongs_a_rotation() {
        let (secrets, v, clock) = setup();
        secrets.rotate(s(B));
        // The wall clock jumps a day ahead (an NTP step): the rotation goes on.
        clock.set_secs(NOW + 86_400);
        assert_eq!(check_now(&v, &clock, A), Ok(MatchedSecret::Previous(0)));
        // ... and back an hour before the rotation: it still ends on time.
        clock.set_secs(NOW - 3_600);
        clock.advance(DEFAULT_PREVIOUS_EXPIRY - Duration::from_millis(1));
        assert_eq!(check_now(&v, &clock, A), Ok(MatchedSecret::Previous(0)));
        clock.advance(Duration::from_millis(1));
        assert_eq!(
            check_now(&v, &clock, A),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(check_now(&v, &clock, B), Ok(MatchedSecret::Current));
    }

    #[test]
    fn replace_takes_each_deadline_from_the_wall_clock_once() {
        let (secrets, v, clock) = setup();
        let wall = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        // B current, A until a minute from now, C's deadline passed a day ago.
        secrets.replace(
            s(B),
            [
                (s(A), Expiry::At(wall(NOW + 60))),
                (s(C), Expiry::At(wall(NOW - 86_400))),
            ],
        );
        assert_eq!(check_now(&v, &clock, B), Ok(MatchedSecret::Current));
        assert_eq!(check_now(&v, &clock, A), Ok(MatchedSecret::Previous(0)));
        assert_eq!(
            check_now(&v, &clock, C),
            Err(VerifyError::SignatureMismatch)
        );
        // Converted once: a wall-clock step does not move it, time passing does.
        clock.set_secs(NOW + 86_400);
        assert_eq!(check_now(&v, &clock, A), Ok(MatchedSecret::Previous(0)));
        clock.advance(Duration::from_secs(60));
        assert_eq!(
            check_now(&v, &clock, A),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn replace_never_prolongs_a_deadline_given_after_and_keeps_the_old_current() {
        let (secrets, v, clock) = setup();
        let since = UNIX_EPOCH + Duration::from_secs(NOW);
        // A becomes previous by a file written now, without a deadline: ten minutes.
        secrets.replace(s(B), [(s(A), Expiry::After(since))]);
        clock.advance(Duration::from_secs(300));
        // The same list again, "written" later (a touched file): no extension.
        secrets.replace(
            s(B),
            [(s(A), Expiry::After(since + Duration::from_secs(300)))],
        );
        clock.advance(DEFAULT_PREVIOUS_EXPIRY - Duration::from_secs(300));
        assert_eq!(
            check_now(&v, &clock, A),
            Err(VerifyError::SignatureMismatch)
        );
        // A current secret missing from the new list stays previous for the expiry.
        secrets.replace(s(C), []);
        assert_eq!(check_now(&v, &clock, C), Ok(MatchedSecret::Current));
        assert_eq!(check_now(&v, &clock, B), Ok(MatchedSecret::Previous(0)));
        clock.advance(DEFAULT_PREVIOUS_EXPIRY);
        assert_eq!(
            check_now(&v, &clock, B),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn a_second_rotation_puts_the_newest_previous_first() {
        let (secrets, v, _) = setup();
        secrets.rotate(s(B));
        secrets.rotate(s(C));
        assert_eq!(check(&v, C), Ok(MatchedSecret::Current));
        assert_eq!(check(&v, B), Ok(MatchedSecret::Previous(0)));
        assert_eq!(check(&v, A), Ok(MatchedSecret::Previous(1)));
        // Rotating back to a previous secret makes it current only.
        secrets.rotate(s(A));
        assert_eq!(check(&v, A), Ok(MatchedSecret::Current));
        assert_eq!(secrets.masked().len(), 3);
        // Rotating to the current secret changes nothing.
        secrets.rotate(s(A));
        assert_eq!(secrets.masked().len(), 3);
    }

    #[test]
    fn set_replaces_and_keeps_deadlines_of_known_previous_secrets() {
        let (secrets, v, clock) = setup();
        let v = v.tolerance(Duration::from_secs(3600));
        secrets.set(s(B), [s(A)]);
        assert_eq!(check(&v, A), Ok(MatchedSecret::Previous(0)));
        // Five minutes later the same list is set again (a reloaded file): A's deadline
        // does not move.
        clock.advance(Duration::from_secs(300));
        secrets.set(s(B), [s(A)]);
        clock.advance(Duration::from_secs(300));
        assert_eq!(check(&v, A), Err(VerifyError::SignatureMismatch));
        // Setting a list without C refuses C; a duplicate of the current is ignored.
        secrets.set(s(C), [s(C), s(B)]);
        assert_eq!(check(&v, C), Ok(MatchedSecret::Current));
        assert_eq!(check(&v, B), Ok(MatchedSecret::Previous(0)));
        assert_eq!(secrets.masked().len(), 2);
    }

    #[test]
    fn builder_previous_secrets_do_not_expire_and_can_be_removed() {
        let clock = ManualClock::at_secs(NOW);
        let secrets = Secrets::new(s(B))
            .previous_secret(s(A))
            .clock(clock.clone());
        let v =
            Verifier::from_secrets(secrets.clone()).tolerance(Duration::from_secs(u32::MAX.into()));
        clock.advance(Duration::from_secs(86_400));
        assert_eq!(check(&v, A), Ok(MatchedSecret::Previous(0)));
        assert!(
            !secrets.remove_previous(&s(B)),
            "the current one is never removed"
        );
        assert!(secrets.remove_previous(&s(A)));
        assert!(!secrets.remove_previous(&s(A)));
        assert_eq!(check(&v, A), Err(VerifyError::SignatureMismatch));
        assert_eq!(check(&v, B), Ok(MatchedSecret::Current));
    }

    #[test]
    fn with_previous_holds_them_all_in_order_without_expiry_or_duplicates() {
        let clock = ManualClock::at_secs(NOW);
        let secrets = Secrets::with_previous(s(C), [s(B), s(C), s(A), s(B)]).clock(clock.clone());
        let chained = Secrets::new(s(C))
            .previous_secret(s(B))
            .previous_secret(s(A));
        assert_eq!(secrets.masked(), chained.masked());
        assert_eq!(secrets.masked().len(), 3, "{:?}", secrets.masked());
        let v =
            Verifier::from_secrets(secrets.clone()).tolerance(Duration::from_secs(u32::MAX.into()));
        // A day later every one is still accepted, each at its place.
        clock.advance(Duration::from_secs(86_400));
        assert_eq!(check(&v, C), Ok(MatchedSecret::Current));
        assert_eq!(check(&v, B), Ok(MatchedSecret::Previous(0)));
        assert_eq!(check(&v, A), Ok(MatchedSecret::Previous(1)));
        // None: only the current one.
        let alone = Secrets::with_previous(s(A), None);
        assert_eq!(alone.masked(), Secrets::new(s(A)).masked());
    }

    #[test]
    fn clear_previous_and_a_configured_expiry() {
        let (secrets, v, clock) = setup();
        let secrets = secrets.previous_expiry(Duration::from_secs(30));
        secrets.rotate(s(B));
        clock.advance(Duration::from_secs(29));
        assert_eq!(check(&v, A), Ok(MatchedSecret::Previous(0)));
        clock.advance(Duration::from_secs(1));
        assert_eq!(check(&v, A), Err(VerifyError::SignatureMismatch));
        secrets.rotate(s(C));
        secrets.clear_previous();
        assert_eq!(check(&v, B), Err(VerifyError::SignatureMismatch));
        assert_eq!(secrets.masked(), vec![s(C).masked()]);
    }

    #[test]
    fn debug_and_masked_never_show_a_secret() {
        let (secrets, _, _) = setup();
        secrets.rotate(s(B));
        let shown = format!("{secrets:?} {:?}", secrets.masked());
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(
            shown.contains("whsec_••••6789 (expires in 600 s)"),
            "{shown}"
        );
    }

    #[test]
    fn a_change_is_seen_by_requests_on_other_threads_while_they_run() {
        // Readers verify in a loop on other threads while the secret is rotated: every
        // request verifies against either the old set or the new one, and once the
        // rotation has happened the new secret is accepted by every reader.
        let (secrets, v, _) = setup();
        let b_header = Signer::new(s(B)).sign(BODY, NOW);
        let a_header = Signer::new(s(A)).sign(BODY, NOW);
        let rotated = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    scope.spawn(|| {
                        let mut saw_new = 0u32;
                        let deadline = std::time::Instant::now() + Duration::from_secs(10);
                        while saw_new < 1000 && std::time::Instant::now() < deadline {
                            // A is current, then previous: always accepted.
                            assert!(v.verify_signature(&a_header, BODY).is_ok());
                            let after = rotated.load(std::sync::atomic::Ordering::SeqCst);
                            let b = v.verify_signature(&b_header, BODY);
                            if after {
                                assert_eq!(b.map(|m| m.secret), Ok(MatchedSecret::Current));
                                saw_new += 1;
                            }
                        }
                        saw_new
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(20));
            secrets.rotate(s(B));
            rotated.store(true, std::sync::atomic::Ordering::SeqCst);
            for reader in readers {
                assert_eq!(reader.join().unwrap(), 1000);
            }
        });
    }
}
