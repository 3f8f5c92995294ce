//! The `User` aggregate: a person who signs in with email and password.
//!
//! The password hash is a secret and never enters an event; it lives in the write-side
//! `user_credentials` table. Email uniqueness is enforced by a claim taken before the
//! command runs (see the api crate's identity service).

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, ValidationErrors};
use crate::validate;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct User {
    registered: bool,
    email: String,
    name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UserCommand {
    /// Register a new user; `email` must already be normalized.
    RegisterUser { email: String, name: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    UserRegistered { email: String, name: Option<String> },
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            Self::UserRegistered { .. } => "UserRegistered".into(),
        }
    }

    fn event_version(&self) -> String {
        "1.0".into()
    }
}

/// Validates registration data; shared by the aggregate and request pre-checks.
pub fn validate_registration(email: &str, name: Option<&str>) -> ValidationErrors {
    let mut errors = ValidationErrors::new();
    errors.check("email", validate::email(email));
    if let Some(name) = name {
        errors.check("name", validate::optional_text("name", name, 100));
    }
    errors
}

impl Aggregate for User {
    const TYPE: &'static str = "User";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: UserCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            UserCommand::RegisterUser { email, name } => {
                if self.registered {
                    return Err(DomainError::AlreadyExists("user"));
                }
                validate_registration(&email, name.as_deref()).into_result()?;
                sink.write(UserEvent::UserRegistered { email, name }, self)
                    .await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: UserEvent) {
        match event {
            UserEvent::UserRegistered { email, name } => {
                self.registered = true;
                self.email = email;
                self.name = name;
            }
        }
    }
}

impl crate::Tenanted for User {
    /// Users belong to no one workspace.
    fn tenant(&self, _: &str) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type UserTest = TestFramework<User>;

    #[tokio::test]
    async fn registers_once() {
        let registered = UserEvent::UserRegistered {
            email: "ada@example.com".into(),
            name: Some("Ada".into()),
        };
        UserTest::with(())
            .given_no_previous_events()
            .when_async(UserCommand::RegisterUser {
                email: "ada@example.com".into(),
                name: Some("Ada".into()),
            })
            .await
            .then_expect_events(vec![registered.clone()]);
        UserTest::with(())
            .given(vec![registered])
            .when_async(UserCommand::RegisterUser {
                email: "ada@example.com".into(),
                name: None,
            })
            .await
            .then_expect_error(DomainError::AlreadyExists("user"));
    }

    #[tokio::test]
    async fn refuses_a_bad_email() {
        UserTest::with(())
            .given_no_previous_events()
            .when_async(UserCommand::RegisterUser {
                email: "not-an-email".into(),
                name: None,
            })
            .await
            .then_expect_error(DomainError::Validation(ValidationErrors::single(
                "email",
                "The email must be a valid email address.",
            )));
    }
}
