//! Strata's agent frontend: durable messaging for AI agents (mailboxes, work queues,
//! topics with resumable streams, tasks) over journal streams. Being built: this far it
//! holds the delivery state of a work queue ([`queue`]).

pub mod queue;
