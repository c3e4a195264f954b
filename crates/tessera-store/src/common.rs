//! The store operations shared by both backends.
//!
//! The SQL is written once: `$n` placeholders, `ON CONFLICT` upserts and `RETURNING` mean the
//! same on SQLite (3.35+, bundled) and PostgreSQL. The macro is instantiated per backend with the
//! few dialect differences (row-lock suffixes) and relies on the store's `pool` field (reads)
//! and two inherent methods: `writer()` (the pool every write goes through: SQLite's single
//! writer connection, PostgreSQL's one pool) and `begin_write()` (a transaction that may write,
//! on the writer: `BEGIN IMMEDIATE` on SQLite so read-then-write never hits `SQLITE_BUSY`
//! mid-transaction, `BEGIN` on PostgreSQL where the row locks below do the serializing).
//! Reading through `pool` right after a write through `writer()` sees the write: each write
//! has committed when its call returns.

/// Grace period after `expires_at` during which a consumed authorization code is kept, so a
/// late replay is still reported as `AlreadyUsed` (and the grant revoked) instead of `NotFound`.
pub const CONSUMED_CODE_GRACE_SECS: i64 = 86_400;

macro_rules! impl_store {
    (
        store = $store:ident,
        backend = $backend:literal,
        for_update = $for_update:literal,
        for_share = $for_share:literal,
        remember_once = $remember_once:ident $(,)?
    ) => {
        use ::tessera_core::clock::UnixTime;
        use ::tessera_core::model::{
            AuthCode, Client, CodeRedemption, Grant, KeyRecord, RefreshRotation, RefreshToken,
            Session, User,
        };
        use ::tessera_core::store::{
            ClientStore, GrantStore, KeyStore, MetaStore, ReplayStore, SessionStore, Store,
            StoreError, StoreResult, UserStore,
        };
        use $crate::error::{db_err, decode, encode};

        type KeyRow = (
            String,
            String,
            String,
            String,
            i64,
            i64,
            i64,
            Option<i64>,
            Option<i64>,
        );

        #[::async_trait::async_trait]
        impl ClientStore for $store {
            async fn get_client(&self, client_id: &str) -> StoreResult<Option<Client>> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT doc FROM clients WHERE client_id = $1")
                        .bind(client_id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db_err)?;
                row.map(|(doc,)| decode("clients", &doc)).transpose()
            }

            async fn create_client(&self, client: &Client) -> StoreResult<()> {
                let doc = encode("client", client)?;
                sqlx::query("INSERT INTO clients (client_id, doc) VALUES ($1, $2)")
                    .bind(&client.client_id)
                    .bind(doc)
                    .execute(self.writer())
                    .await
                    .map_err(db_err)?;
                Ok(())
            }

            async fn put_client(&self, client: &Client) -> StoreResult<()> {
                let doc = encode("client", client)?;
                sqlx::query(
                    "INSERT INTO clients (client_id, doc) VALUES ($1, $2) \
                     ON CONFLICT (client_id) DO UPDATE \
                     SET doc = excluded.doc, updated_at = excluded.updated_at",
                )
                .bind(&client.client_id)
                .bind(doc)
                .execute(self.writer())
                .await
                .map_err(db_err)?;
                Ok(())
            }

            async fn delete_client(&self, client_id: &str) -> StoreResult<bool> {
                let r = sqlx::query("DELETE FROM clients WHERE client_id = $1")
                    .bind(client_id)
                    .execute(self.writer())
                    .await
                    .map_err(db_err)?;
                Ok(r.rows_affected() > 0)
            }

            async fn list_clients(&self) -> StoreResult<Vec<Client>> {
                let rows: Vec<(String,)> =
                    sqlx::query_as("SELECT doc FROM clients ORDER BY client_id")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db_err)?;
                rows.iter().map(|(doc,)| decode("clients", doc)).collect()
            }
        }

        #[::async_trait::async_trait]
        impl UserStore for $store {
            async fn get_user(&self, username: &str) -> StoreResult<Option<User>> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT doc FROM users WHERE username = $1")
                        .bind(username)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db_err)?;
                row.map(|(doc,)| decode("users", &doc)).transpose()
            }

            async fn get_user_by_subject(&self, subject: &str) -> StoreResult<Option<User>> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT doc FROM users WHERE subject = $1")
                        .bind(subject)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db_err)?;
                row.map(|(doc,)| decode("users", &doc)).transpose()
            }

            async fn create_user(&self, user: &User) -> StoreResult<()> {
                let doc = encode("user", user)?;
                sqlx::query("INSERT INTO users (username, subject, doc) VALUES ($1, $2, $3)")
                    .bind(&user.username)
                    .bind(&user.subject)
                    .bind(doc)
                    .execute(self.writer())
                    .await
                    .map_err(db_err)?;
                Ok(())
            }

            async fn update_user(&self, user: &User) -> StoreResult<bool> {
                let doc = encode("user", user)?;
                let r = sqlx::query("UPDATE users SET subject = $2, doc = $3 WHERE username = $1")
                    .bind(&user.username)
                    .bind(&user.subject)
                    .bind(doc)
                    .execute(self.writer())
                    .await
                    .map_err(db_err)?;
                Ok(r.rows_affected() > 0)
            }

            async fn list_users(&self) -> StoreResult<Vec<User>> {
                let rows: Vec<(String,)> =
                    sqlx::query_as("SELECT doc FROM users ORDER BY username")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db_err)?;
                rows.iter().map(|(doc,)| decode("users", doc)).collect()
            }
        }

        #[::async_trait::async_trait]
        impl KeyStore for $store {
            async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>> {
                let rows: Vec<KeyRow> = sqlx::query_as(
                    "SELECT kid, alg, private_sealed, public_jwk, created_at, publish_at, \
                     activate_at, retire_at, remove_at FROM signing_keys ORDER BY created_at, kid",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.into_iter()
                    .map(|r| {
                        Ok(KeyRecord {
                            kid: r.0,
                            alg: r.1,
                            private_sealed: r.2,
                            public_jwk: decode("signing_keys", &r.3)?,
                            created_at: r.4,
                            publish_at: r.5,
                            activate_at: r.6,
                            retire_at: r.7,
                            remove_at: r.8,
                        })
                    })
                    .collect()
            }

            async fn insert_key(&self, key: &KeyRecord) -> StoreResult<()> {
                let jwk = encode("public JWK", &key.public_jwk)?;
                sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, private_sealed, public_jwk, created_at, \
                     publish_at, activate_at, retire_at, remove_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&key.kid)
                .bind(&key.alg)
                .bind(&key.private_sealed)
                .bind(jwk)
                .bind(key.created_at)
                .bind(key.publish_at)
                .bind(key.activate_at)
                .bind(key.retire_at)
                .bind(key.remove_at)
                .execute(self.writer())
                .await
                .map_err(db_err)?;
                Ok(())
            }

            async fn update_key_schedule(
                &self,
                kid: &str,
                retire_at: Option<UnixTime>,
                remove_at: Option<UnixTime>,
            ) -> StoreResult<bool> {
                let r = sqlx::query(
                    "UPDATE signing_keys SET retire_at = $2, remove_at = $3 WHERE kid = $1",
                )
                .bind(kid)
                .bind(retire_at)
                .bind(remove_at)
                .execute(self.writer())
                .await
                .map_err(db_err)?;
                Ok(r.rows_affected() > 0)
            }

            async fn delete_removed_keys(&self, now: UnixTime) -> StoreResult<u64> {
                let r = sqlx::query(
                    "DELETE FROM signing_keys WHERE remove_at IS NOT NULL AND remove_at <= $1",
                )
                .bind(now)
                .execute(self.writer())
                .await
                .map_err(db_err)?;
                Ok(r.rows_affected())
            }
        }

        #[::async_trait::async_trait]
        impl GrantStore for $store {
            async fn put_grant(&self, grant: &Grant) -> StoreResult<()> {
                let doc = encode("grant", grant)?;
                // Revocation is sticky: a racing write of an older copy never un-revokes.
                sqlx::query(
                    "INSERT INTO grants (grant_id, client_id, subject, doc, expires_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (grant_id) DO UPDATE SET client_id = excluded.client_id, \
                     subject = excluded.subject, doc = excluded.doc, \
                     expires_at = excluded.expires_at, \
                     revoked_at = COALESCE(grants.revoked_at, excluded.revoked_at)",
                )
                .bind(&grant.grant_id)
                .bind(&grant.client_id)
                .bind(&grant.subject)
                .bind(doc)
                .bind(grant.expires_at)
                .bind(grant.revoked_at)
                .execute(self.writer())
                .await
                .map_err(db_err)?;
                Ok(())
            }

            async fn get_grant(&self, grant_id: &str) -> StoreResult<Option<Grant>> {
                let row: Option<(String, Option<i64>)> =
                    sqlx::query_as("SELECT doc, revoked_at FROM grants WHERE grant_id = $1")
                        .bind(grant_id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db_err)?;
                let Some((doc, revoked_at)) = row else {
                    return Ok(None);
                };
                let mut grant: Grant = decode("grants", &doc)?;
                grant.revoked_at = revoked_at;
                Ok(Some(grant))
            }

            async fn revoke_grant(&self, grant_id: &str, now: UnixTime) -> StoreResult<()> {
                // Lock order everywhere: the grant row first, then its tokens.
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "UPDATE grants SET revoked_at = COALESCE(revoked_at, $2) WHERE grant_id = $1",
                )
                .bind(grant_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                sqlx::query("DELETE FROM refresh_tokens WHERE grant_id = $1")
                    .bind(grant_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }

            async fn put_code(&self, code: &AuthCode) -> StoreResult<()> {
                // Plain insert: replacing a stored code would reset its consumed state.
                let doc = encode("authorization code", code)?;
                sqlx::query(
                    "INSERT INTO auth_codes (code_hash, grant_id, doc, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&code.code_hash)
                .bind(&code.grant_id)
                .bind(doc)
                .bind(code.expires_at)
                .execute(self.writer())
                .await
                .map_err(db_err)?;
                Ok(())
            }

            async fn redeem_code(
                &self,
                code_hash: &str,
                now: UnixTime,
            ) -> StoreResult<CodeRedemption> {
                let row: Option<(String,)> = sqlx::query_as(
                    "UPDATE auth_codes SET consumed_at = $2 \
                     WHERE code_hash = $1 AND consumed_at IS NULL AND expires_at > $2 \
                     RETURNING doc",
                )
                .bind(code_hash)
                .bind(now)
                .fetch_optional(self.writer())
                .await
                .map_err(db_err)?;
                if let Some((doc,)) = row {
                    return Ok(CodeRedemption::Redeemed(decode("auth_codes", &doc)?));
                }
                // Not consumable: consumed (reuse, even after expiry while the row is kept),
                // expired or unknown.
                let row: Option<(String, Option<i64>)> = sqlx::query_as(
                    "SELECT grant_id, consumed_at FROM auth_codes WHERE code_hash = $1",
                )
                .bind(code_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
                Ok(match row {
                    Some((grant_id, Some(_))) => CodeRedemption::AlreadyUsed { grant_id },
                    _ => CodeRedemption::NotFound,
                })
            }

            async fn put_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
                // Plain insert: replacing a stored token would reset its spent state.
                let doc = encode("refresh token", token)?;
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, grant_id, doc, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&token.token_hash)
                .bind(&token.grant_id)
                .bind(doc)
                .bind(token.expires_at)
                .execute(self.writer())
                .await
                .map_err(db_err)?;
                Ok(())
            }

            async fn get_refresh_token(
                &self,
                token_hash: &str,
            ) -> StoreResult<Option<RefreshToken>> {
                // A spent (rotated) token is no longer a token: None.
                let row: Option<(String,)> = sqlx::query_as(
                    "SELECT doc FROM refresh_tokens WHERE token_hash = $1 AND spent_at IS NULL",
                )
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
                row.map(|(doc,)| decode("refresh_tokens", &doc)).transpose()
            }

            async fn rotate_refresh_token(
                &self,
                old_hash: &str,
                new: &RefreshToken,
                now: UnixTime,
            ) -> StoreResult<RefreshRotation> {
                let doc = encode("refresh token", new)?;
                let mut tx = self.begin_write().await?;
                // Share-lock the grant (PostgreSQL) so a concurrent revoke_grant, which takes
                // the grant row first, cannot miss the token inserted here.
                let grant: Option<(Option<i64>,)> = sqlx::query_as(concat!(
                    "SELECT revoked_at FROM grants WHERE grant_id = $1",
                    $for_share
                ))
                .bind(&new.grant_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
                if let Some((Some(_),)) = grant {
                    // Revoked: its tokens are gone (or going) with it.
                    return Ok(RefreshRotation::NotFound);
                }
                let spent: Option<(String,)> = sqlx::query_as(
                    "UPDATE refresh_tokens SET spent_at = $2 \
                     WHERE token_hash = $1 AND spent_at IS NULL AND expires_at > $2 \
                     RETURNING grant_id",
                )
                .bind(old_hash)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
                let Some((grant_id,)) = spent else {
                    let row: Option<(String, Option<i64>)> = sqlx::query_as(
                        "SELECT grant_id, spent_at FROM refresh_tokens WHERE token_hash = $1",
                    )
                    .bind(old_hash)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    return Ok(match row {
                        Some((grant_id, Some(_))) => RefreshRotation::Reused { grant_id },
                        _ => RefreshRotation::NotFound,
                    });
                };
                if grant_id != new.grant_id {
                    return Err(StoreError::Backend(
                        "rotation must keep the refresh token's grant".into(),
                    ));
                }
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, grant_id, doc, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&new.token_hash)
                .bind(&new.grant_id)
                .bind(doc)
                .bind(new.expires_at)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                tx.commit().await.map_err(db_err)?;
                Ok(RefreshRotation::Rotated(new.clone()))
            }

            async fn delete_refresh_token(&self, token_hash: &str) -> StoreResult<bool> {
                let r = sqlx::query("DELETE FROM refresh_tokens WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(self.writer())
                    .await
                    .map_err(db_err)?;
                Ok(r.rows_affected() > 0)
            }

            async fn revoke_access_token(
                &self,
                jti: &str,
                expires_at: UnixTime,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) \
                     ON CONFLICT (jti) DO UPDATE SET expires_at = CASE \
                     WHEN excluded.expires_at > revoked_tokens.expires_at \
                     THEN excluded.expires_at ELSE revoked_tokens.expires_at END",
                )
                .bind(jti)
                .bind(expires_at)
                .execute(self.writer())
                .await
                .map_err(db_err)?;
                Ok(())
            }

            async fn is_access_token_revoked(&self, jti: &str) -> StoreResult<bool> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT jti FROM revoked_tokens WHERE jti = $1")
                        .bind(jti)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db_err)?;
                Ok(row.is_some())
            }
        }

        #[::async_trait::async_trait]
        impl SessionStore for $store {
            async fn put_session(&self, session: &Session) -> StoreResult<()> {
                let doc = encode("session", session)?;
                sqlx::query(
                    "INSERT INTO sessions (id_hash, subject, doc, expires_at) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id_hash) DO UPDATE SET subject = excluded.subject, \
                     doc = excluded.doc, expires_at = excluded.expires_at",
                )
                .bind(&session.id_hash)
                .bind(&session.subject)
                .bind(doc)
                .bind(session.expires_at)
                .execute(self.writer())
                .await
                .map_err(db_err)?;
                Ok(())
            }

            async fn get_session(
                &self,
                id_hash: &str,
                now: UnixTime,
            ) -> StoreResult<Option<Session>> {
                let row: Option<(String,)> = sqlx::query_as(
                    "SELECT doc FROM sessions WHERE id_hash = $1 AND expires_at > $2",
                )
                .bind(id_hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
                row.map(|(doc,)| decode("sessions", &doc)).transpose()
            }

            async fn add_session_client(&self, id_hash: &str, client_id: &str) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                let row: Option<(String,)> = sqlx::query_as(concat!(
                    "SELECT doc FROM sessions WHERE id_hash = $1",
                    $for_update
                ))
                .bind(id_hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
                let Some((doc,)) = row else {
                    return Ok(()); // no such session: nothing to record
                };
                let mut session: Session = decode("sessions", &doc)?;
                if session.clients.iter().any(|c| c == client_id) {
                    return Ok(());
                }
                session.clients.push(client_id.to_owned());
                let doc = encode("session", &session)?;
                sqlx::query("UPDATE sessions SET doc = $2 WHERE id_hash = $1")
                    .bind(id_hash)
                    .bind(doc)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }

            async fn delete_session(&self, id_hash: &str) -> StoreResult<Option<Session>> {
                let row: Option<(String,)> =
                    sqlx::query_as("DELETE FROM sessions WHERE id_hash = $1 RETURNING doc")
                        .bind(id_hash)
                        .fetch_optional(self.writer())
                        .await
                        .map_err(db_err)?;
                row.map(|(doc,)| decode("sessions", &doc)).transpose()
            }

            async fn get_consent(
                &self,
                subject: &str,
                client_id: &str,
            ) -> StoreResult<Option<String>> {
                let row: Option<(String,)> = sqlx::query_as(
                    "SELECT scope FROM consents WHERE subject = $1 AND client_id = $2",
                )
                .bind(subject)
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
                Ok(row.map(|(scope,)| scope))
            }

            async fn put_consent(
                &self,
                subject: &str,
                client_id: &str,
                scope: &str,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO consents (subject, client_id, scope) VALUES ($1, $2, $3) \
                     ON CONFLICT (subject, client_id) DO UPDATE SET scope = excluded.scope",
                )
                .bind(subject)
                .bind(client_id)
                .bind(scope)
                .execute(self.writer())
                .await
                .map_err(db_err)?;
                Ok(())
            }
        }

        #[::async_trait::async_trait]
        impl ReplayStore for $store {
            async fn remember_once(
                &self,
                key: &str,
                expires_at: UnixTime,
                now: UnixTime,
            ) -> StoreResult<bool> {
                $crate::common::remember_once!($remember_once, self, key, expires_at, now)
            }
        }

        #[::async_trait::async_trait]
        impl MetaStore for $store {
            async fn get_meta(&self, key: &str) -> StoreResult<Option<serde_json::Value>> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT value FROM meta WHERE key = $1")
                        .bind(key)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db_err)?;
                row.map(|(v,)| decode("meta", &v)).transpose()
            }

            async fn put_meta_if_absent(
                &self,
                key: &str,
                value: &serde_json::Value,
            ) -> StoreResult<serde_json::Value> {
                let text = encode("meta value", value)?;
                sqlx::query(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                )
                .bind(key)
                .bind(text)
                .execute(self.writer())
                .await
                .map_err(db_err)?;
                // The row exists now (ours or the winner's) and meta rows are never deleted.
                self.get_meta(key).await?.ok_or_else(|| {
                    StoreError::Backend("meta value vanished after insert".into())
                })
            }

            async fn put_meta(&self, key: &str, value: &serde_json::Value) -> StoreResult<()> {
                let text = encode("meta value", value)?;
                sqlx::query(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(key)
                .bind(text)
                .execute(self.writer())
                .await
                .map_err(db_err)?;
                Ok(())
            }
        }

        #[::async_trait::async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map_err(db_err)?;
                Ok(())
            }

            async fn schema_version(&self) -> StoreResult<(i64, i64)> {
                Ok((self.applied_version().await?, Self::expected_version()))
            }

            async fn collect_garbage(&self, now: UnixTime) -> StoreResult<u64> {
                let grace = now.saturating_sub($crate::common::CONSUMED_CODE_GRACE_SECS);
                // (statement, binds now, binds now - grace)
                let steps: [(&'static str, bool); 6] = [
                    // Unconsumed codes go at expiry; consumed ones stay for the grace period so
                    // a replay is still detected as reuse.
                    (
                        "DELETE FROM auth_codes WHERE expires_at <= $1 \
                         AND (consumed_at IS NULL OR expires_at <= $2)",
                        true,
                    ),
                    ("DELETE FROM refresh_tokens WHERE expires_at <= $1", false),
                    ("DELETE FROM revoked_tokens WHERE expires_at <= $1", false),
                    ("DELETE FROM sessions WHERE expires_at <= $1", false),
                    ("DELETE FROM replay WHERE expires_at <= $1", false),
                    // Grants go once expired and nothing hangs off them any more.
                    (
                        "DELETE FROM grants WHERE expires_at <= $1 \
                         AND NOT EXISTS (SELECT 1 FROM refresh_tokens r \
                                         WHERE r.grant_id = grants.grant_id) \
                         AND NOT EXISTS (SELECT 1 FROM auth_codes c \
                                         WHERE c.grant_id = grants.grant_id)",
                        false,
                    ),
                ];
                // Lockout records have their own rules (see LockoutStore).
                let mut total =
                    ::tessera_core::store::LockoutStore::lockout_collect_expired(self, now).await?;
                for (sql, with_grace) in steps {
                    let mut q = sqlx::query(sql).bind(now);
                    if with_grace {
                        q = q.bind(grace);
                    }
                    total += q.execute(self.writer()).await.map_err(db_err)?.rows_affected();
                }
                Ok(total)
            }
        }
    };
}

pub(crate) use impl_store;

/// The body of `remember_once`: `direct` is one statement per call; `batched` hands the key to
/// the backend's group commit (`remember_once_batched`, see `sqlite.rs`).
macro_rules! remember_once {
    (direct, $self:ident, $key:ident, $expires_at:ident, $now:ident) => {{
        // One statement: insert, or take over an entry that has expired. A live entry makes
        // the conditional update affect no row.
        let r = sqlx::query(
            "INSERT INTO replay (key, expires_at) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at \
             WHERE replay.expires_at <= $3",
        )
        .bind($key)
        .bind($expires_at)
        .bind($now)
        .execute($self.writer())
        .await
        .map_err(db_err)?;
        Ok(r.rows_affected() == 1)
    }};
    (batched, $self:ident, $key:ident, $expires_at:ident, $now:ident) => {
        $self.remember_once_batched($key, $expires_at, $now).await
    };
}

pub(crate) use remember_once;
