//! The change log: rowcast's own change format ([`change`]), its only
//! encoding ([`codec`]), and the durable logs that keep it between the
//! master's binlog reader and the slaves: segment files on the master's
//! disk ([`segments`]) or a NATS JetStream stream ([`jetstream`]).

pub mod change;
pub mod codec;
pub mod jetstream;
pub mod segments;
