//! Account requests: register the current nick, log in (taking the
//! account's nick), change the password, drop the account.

use crate::protocol::{Nickname, Password, ServerMessage};

use super::super::writer::Dialect;
use super::reply::Failure;
use super::state::{Flow, Session};
use crate::server::accounts::AccountsError;

impl Session {
    pub(super) async fn on_register(
        &mut self,
        password: Password,
        reference: Option<String>,
    ) -> Result<Flow, Failure> {
        let accounts = &self.shared.accounts;
        let account = accounts.register(&self.nick, &password).await?;
        self.logged_in(account, reference);
        Ok(Flow::Continue)
    }

    pub(super) async fn on_login(
        &mut self,
        nick: Nickname,
        password: Password,
        reference: Option<String>,
    ) -> Result<Flow, Failure> {
        let account = self
            .shared
            .accounts
            .login(&nick, &password, self.peer_ip)
            .await?;
        if self.nick != account {
            // The nick follows the account, spelled as it was registered.
            self.shared
                .rooms
                .rename(self.id, &self.nick, &account)
                .await?;
            self.nick = account.clone();
        }
        self.logged_in(account, reference);
        Ok(Flow::Continue)
    }

    pub(super) async fn on_set_password(
        &mut self,
        old: Password,
        new: Password,
        reference: Option<String>,
    ) -> Result<Flow, Failure> {
        let account = self.account.clone().ok_or(AccountsError::NotLoggedIn)?;
        self.shared
            .accounts
            .set_password(&account, &old, &new, self.peer_ip)
            .await?;
        self.done("* password changed", reference);
        Ok(Flow::Continue)
    }

    pub(super) async fn on_drop_account(
        &mut self,
        password: Password,
        reference: Option<String>,
    ) -> Result<Flow, Failure> {
        let account = self.account.clone().ok_or(AccountsError::NotLoggedIn)?;
        self.shared
            .accounts
            .drop_account(&account, &password, self.peer_ip)
            .await?;
        self.account = None;
        self.note_seen();
        self.done(
            &format!("* account {account} dropped; the nick is a guest's now"),
            reference,
        );
        Ok(Flow::Continue)
    }

    pub(super) fn logged_in(&mut self, account: Nickname, reference: Option<String>) {
        tracing::info!(nick = %self.nick, %account, "logged in");
        self.account = Some(account.clone());
        self.note_seen();
        self.reply(ServerMessage::LoggedIn { account }, reference);
    }

    /// `ok` for a native client; a person is told in words.
    fn done(&self, text: &str, reference: Option<String>) {
        match self.dialect {
            Dialect::Native => self.ok(reference),
            Dialect::Text => self.reply(
                ServerMessage::Notice {
                    text: text.to_owned(),
                },
                reference,
            ),
        }
    }
}
