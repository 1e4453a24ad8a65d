//! [`Command`] and [`Reply`]: what goes to Redis and what comes back,
//! without the driver's types in levee's API.

use crate::RedisError;

/// A Redis command: its name and arguments.
///
/// ```
/// use levee_redis::Command;
///
/// let cmd = Command::new("SET").arg("user:1").arg(b"bytes".as_slice()).arg("PX").arg(500u64);
/// assert_eq!(cmd.name(), "SET");
/// ```
#[derive(Clone)]
pub struct Command {
    name: &'static str,
    pub(crate) cmd: redis::Cmd,
}

impl std::fmt::Debug for Command {
    // Arguments may be values or keys of secrets: only the name is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Command {
    /// A command named `name` (`GET`, `SET`, `CLIENT`, ...), no arguments yet.
    pub fn new(name: &'static str) -> Self {
        Command {
            name,
            cmd: redis::cmd(name),
        }
    }

    /// `GET` of `key` in `space` (the key [`Keyspace::key`](crate::Keyspace::key)
    /// builds), written straight into the command: no key allocated.
    pub fn get_in<K: levee_core::RedisKey + ?Sized>(space: &crate::Keyspace, key: &K) -> Self {
        let cmd = space.with_key(key, |k| {
            let mut cmd = crate::client::sized("GET", 2, k.len());
            cmd.arg(k);
            cmd
        });
        Command { name: "GET", cmd }
    }

    /// Appends one argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Arg) -> Self {
        arg.append(&mut self.cmd);
        self
    }

    /// The command's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// A value that can be a command argument: strings, byte strings and
/// integers (sealed).
pub trait Arg: private::Sealed {}

pub(crate) mod private {
    /// Appends itself to a driver command.
    pub trait Sealed {
        fn append(self, cmd: &mut redis::Cmd);
    }
}

macro_rules! args {
    ($($t:ty),*) => {$(
        impl private::Sealed for $t {
            fn append(self, cmd: &mut redis::Cmd) {
                cmd.arg(self);
            }
        }
        impl Arg for $t {}
    )*};
}

args!(
    &str,
    String,
    &String,
    &[u8],
    Vec<u8>,
    &Vec<u8>,
    u32,
    u64,
    i64,
    usize
);

/// A reply from Redis.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Reply {
    /// No value (`nil`).
    Nil,
    /// An integer.
    Int(i64),
    /// A bulk string: bytes.
    Bytes(Vec<u8>),
    /// A status line (`OK`, `PONG`, ...).
    Status(String),
    /// A double (RESP3).
    Double(f64),
    /// A boolean (RESP3).
    Bool(bool),
    /// An array (maps and sets are flattened into arrays).
    Array(Vec<Reply>),
}

impl Reply {
    pub(crate) fn from_value(value: redis::Value) -> Result<Reply, RedisError> {
        use redis::Value;
        Ok(match value {
            Value::Nil => Reply::Nil,
            Value::Int(i) => Reply::Int(i),
            Value::BulkString(b) => Reply::Bytes(b),
            Value::SimpleString(s) => Reply::Status(s),
            Value::Okay => Reply::Status("OK".to_string()),
            Value::Double(d) => Reply::Double(d),
            Value::Boolean(b) => Reply::Bool(b),
            Value::VerbatimString { text, .. } => Reply::Bytes(text.into_bytes()),
            Value::Array(items) | Value::Set(items) => Reply::Array(
                items
                    .into_iter()
                    .map(Reply::from_value)
                    .collect::<Result<_, _>>()?,
            ),
            Value::Map(pairs) => {
                let mut out = Vec::with_capacity(pairs.len() * 2);
                for (k, v) in pairs {
                    out.push(Reply::from_value(k)?);
                    out.push(Reply::from_value(v)?);
                }
                Reply::Array(out)
            }
            Value::Attribute { data, .. } => Reply::from_value(*data)?,
            Value::ServerError(e) => {
                return Err(RedisError::from_driver(
                    redis::RedisError::from(e),
                    "connection",
                ));
            }
            other => {
                return Err(RedisError::UnexpectedReply(format!(
                    "a reply of a kind levee does not read: {other:?}"
                )));
            }
        })
    }

    /// Whether the reply is `nil`.
    pub fn is_nil(&self) -> bool {
        matches!(self, Reply::Nil)
    }

    /// The bytes of a bulk string (or status), `None` for `nil`.
    pub fn into_bytes(self) -> Result<Option<Vec<u8>>, RedisError> {
        match self {
            Reply::Nil => Ok(None),
            Reply::Bytes(b) => Ok(Some(b)),
            Reply::Status(s) => Ok(Some(s.into_bytes())),
            other => Err(unexpected("a string", &other)),
        }
    }

    /// An integer reply (or a bulk string holding a decimal integer).
    pub fn into_int(self) -> Result<i64, RedisError> {
        match self {
            Reply::Int(i) => Ok(i),
            Reply::Bool(b) => Ok(i64::from(b)),
            Reply::Bytes(ref b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| unexpected("an integer", &self)),
            other => Err(unexpected("an integer", &other)),
        }
    }

    /// An array of integers (what levee's scripts return).
    pub fn into_ints(self) -> Result<Vec<i64>, RedisError> {
        match self {
            Reply::Array(items) => items.into_iter().map(Reply::into_int).collect(),
            other => Err(unexpected("an array of integers", &other)),
        }
    }

    /// The items of an array reply.
    pub fn into_array(self) -> Result<Vec<Reply>, RedisError> {
        match self {
            Reply::Array(items) => Ok(items),
            other => Err(unexpected("an array", &other)),
        }
    }
}

fn unexpected(wanted: &str, got: &Reply) -> RedisError {
    let kind = match got {
        Reply::Nil => "nil",
        Reply::Int(_) => "an integer",
        Reply::Bytes(_) => "a bulk string",
        Reply::Status(_) => "a status",
        Reply::Double(_) => "a double",
        Reply::Bool(_) => "a boolean",
        Reply::Array(_) => "an array",
    };
    RedisError::UnexpectedReply(format!("expected {wanted}, got {kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_convert_to_what_callers_read() {
        assert_eq!(Reply::Nil.into_bytes().unwrap(), None);
        assert_eq!(
            Reply::Bytes(b"42".to_vec()).into_int().unwrap(),
            42,
            "a decimal bulk string reads as an integer"
        );
        let arr = Reply::from_value(redis::Value::Array(vec![
            redis::Value::Int(1),
            redis::Value::Int(-2),
        ]))
        .unwrap();
        assert_eq!(arr.into_ints().unwrap(), [1, -2]);
        assert!(Reply::Status("OK".into()).into_int().is_err());
    }

    #[test]
    fn debug_shows_the_name_only() {
        let cmd = Command::new("SET").arg("secret-key").arg("secret-value");
        let shown = format!("{cmd:?}");
        assert!(
            shown.contains("SET") && !shown.contains("secret"),
            "{shown}"
        );
    }
}
