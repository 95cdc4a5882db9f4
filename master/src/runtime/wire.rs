//! Translation between the gRPC messages and the core's calls, events and commands.
//! Malformed input is rejected here with an error naming the field, so the core only sees
//! valid values.

use agora_proto::convert::{self, WireError, id, optional_id, refuse_ms};
use agora_proto::model::{FrameworkId, Role, StreamId, TaskInfo};
use agora_proto::pb;

use crate::core::{Call, CallError, Event, Operation, ToAgent};

/// The event as Agora's gRPC scheduler API sends it; `None` for inverse offers, which only
/// the HTTP scheduler API carries (Mesos' shape, `mesos/`).
pub fn event_to_pb(event: &Event) -> Option<pb::Event> {
    use pb::event::Event as E;
    let event = match event {
        Event::Subscribed { framework_id, stream_id, heartbeat_interval_ms } => E::Subscribed(pb::Subscribed {
            framework_id: framework_id.to_string(),
            stream_id: stream_id.to_string(),
            heartbeat_interval_ms: *heartbeat_interval_ms,
            master_id: String::new(),
        }),
        Event::Offers(offers) => E::Offers(pb::Offers { offers: offers.iter().map(pb::Offer::from).collect() }),
        Event::Rescind(offer_id) => E::Rescind(pb::Rescind { offer_id: offer_id.to_string() }),
        Event::Update(status) => E::Update(pb::Update { status: Some(status.into()) }),
        Event::Message { agent_id, data } => {
            E::Message(pb::FrameworkMessage { agent_id: agent_id.to_string(), data: data.clone() })
        }
        Event::Failure { agent_id } => E::Failure(pb::Failure { agent_id: agent_id.to_string(), status: None }),
        Event::Error(message) => E::Error(pb::Error { message: message.clone() }),
        Event::InverseOffers(_) => return None,
    };
    Some(pb::Event { event: Some(event) })
}

pub fn heartbeat_event() -> pb::Event {
    pb::Event { event: Some(pb::event::Event::Heartbeat(pb::HeartbeatEvent {})) }
}

pub fn to_agent_to_pb(message: &ToAgent) -> pb::MasterMessage {
    use pb::master_message::Message as M;
    let message = match message {
        ToAgent::RunTask { framework, task } => M::RunTask(pb::RunTask {
            framework_id: framework.id.as_ref().map(ToString::to_string).unwrap_or_default(),
            framework: Some(framework.into()),
            task: Some(task.into()),
        }),
        ToAgent::KillTask { framework_id, task_id, grace_period_ms } => M::KillTask(pb::KillTask {
            framework_id: framework_id.to_string(),
            task_id: task_id.to_string(),
            grace_period_ms: grace_period_ms.unwrap_or(0),
        }),
        ToAgent::Acknowledge { framework_id, task_id, uuid } => M::Acknowledge(pb::AcknowledgeUpdate {
            framework_id: framework_id.to_string(),
            task_id: task_id.to_string(),
            uuid: uuid.to_string(),
        }),
        ToAgent::ShutdownFramework { framework_id } => {
            M::ShutdownFramework(pb::ShutdownFramework { framework_id: framework_id.to_string() })
        }
    };
    pb::MasterMessage { message: Some(message) }
}

/// Reads the addressing part of a call: which framework, which subscription.
pub fn call_target(call: &pb::Call) -> Result<(FrameworkId, StreamId), WireError> {
    Ok((id("framework_id", &call.framework_id)?, id("stream_id", &call.stream_id)?))
}

fn roles(field: &str, names: &[String]) -> Result<Vec<Role>, WireError> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| Role::parse(name).map_err(|e| WireError::new(format!("{field}[{i}]"), e.to_string())))
        .collect()
}

fn offer_ids<T: From<String>>(field: &str, ids: &[String]) -> Result<Vec<T>, WireError> {
    if ids.len() > convert::MAX_ENTRIES {
        return Err(WireError::new(field, format!("has more than {} entries", convert::MAX_ENTRIES)));
    }
    ids.iter().enumerate().map(|(i, offer)| id(&format!("{field}[{i}]"), offer)).collect()
}

/// Converts the body of a call. A task that cannot be read at all rejects the whole call
/// (its offers stay outstanding); a task that reads but makes no sense (too big, duplicate
/// id) is the core's to answer with TASK_ERROR.
/// Most acknowledgements in one ACKNOWLEDGE_MANY call.
pub const MAX_ACKNOWLEDGEMENTS: usize = 10_000;

/// The core calls a gRPC call stands for: one, or one per acknowledgement of an
/// ACKNOWLEDGE_MANY.
pub fn calls_from_pb(call: pb::Call) -> Result<Vec<Call>, WireError> {
    use pb::call::Call as C;
    let body = call.call.ok_or_else(|| WireError::new("call", "is required: name one of accept, decline, revive, suppress, kill, acknowledge, acknowledge_many, reconcile, message, teardown"))?;
    Ok(vec![match body {
        C::AcknowledgeMany(many) => return acknowledgements(&many),
        C::Accept(accept) => {
            let mut operations = Vec::with_capacity(accept.operations.len());
            for (i, operation) in accept.operations.into_iter().enumerate() {
                let field = format!("accept.operations[{i}]");
                match operation.operation {
                    Some(pb::operation::Operation::Launch(launch)) => {
                        let tasks = launch
                            .tasks
                            .into_iter()
                            .enumerate()
                            .map(|(j, task)| {
                                TaskInfo::try_from(task).map_err(|e| e.in_field(&format!("{field}.launch.tasks[{j}]")))
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        operations.push(Operation::Launch { tasks });
                    }
                    Some(pb::operation::Operation::Reserve(reserve)) => {
                        let resources = convert::resources(&format!("{field}.reserve.resources"), reserve.resources)?;
                        operations.push(Operation::Reserve { resources });
                    }
                    Some(pb::operation::Operation::Unreserve(unreserve)) => {
                        let resources =
                            convert::resources(&format!("{field}.unreserve.resources"), unreserve.resources)?;
                        operations.push(Operation::Unreserve { resources });
                    }
                    None => return Err(WireError::new(field, "names no operation")),
                }
            }
            Call::Accept {
                offer_ids: offer_ids("accept.offer_ids", &accept.offer_ids)?,
                operations,
                refuse_ms: refuse_ms(accept.filters.as_ref()).map_err(|e| e.in_field("accept"))?,
            }
        }
        C::Decline(decline) => Call::Decline {
            offer_ids: offer_ids("decline.offer_ids", &decline.offer_ids)?,
            refuse_ms: refuse_ms(decline.filters.as_ref()).map_err(|e| e.in_field("decline"))?,
        },
        C::Revive(revive) => Call::Revive { roles: roles("revive.roles", &revive.roles)? },
        C::Suppress(suppress) => Call::Suppress { roles: roles("suppress.roles", &suppress.roles)? },
        C::Kill(kill) => Call::Kill {
            task_id: id("kill.task_id", &kill.task_id)?,
            agent_id: optional_id("kill.agent_id", &kill.agent_id)?,
        },
        C::Acknowledge(ack) => acknowledge("acknowledge", &ack)?,
        C::Reconcile(reconcile) => {
            if reconcile.tasks.len() > convert::MAX_ENTRIES * 100 {
                return Err(WireError::new("reconcile.tasks", "has too many entries"));
            }
            let tasks = reconcile
                .tasks
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let field = format!("reconcile.tasks[{i}]");
                    Ok((
                        id(&format!("{field}.task_id"), &t.task_id)?,
                        optional_id(&format!("{field}.agent_id"), &t.agent_id)?,
                    ))
                })
                .collect::<Result<Vec<_>, WireError>>()?;
            Call::Reconcile { tasks }
        }
        C::Message(message) => {
            if message.data.len() > convert::MAX_TEXT_LEN {
                return Err(WireError::new("message.data", "is larger than 64 KiB"));
            }
            Call::Message { agent_id: id("message.agent_id", &message.agent_id)?, data: message.data }
        }
        C::Teardown(_) => Call::Teardown,
    }])
}

fn acknowledgements(many: &pb::AcknowledgeMany) -> Result<Vec<Call>, WireError> {
    let field = "acknowledge_many.acknowledgements";
    if many.acknowledgements.is_empty() || many.acknowledgements.len() > MAX_ACKNOWLEDGEMENTS {
        return Err(WireError::new(field, format!("must hold between 1 and {MAX_ACKNOWLEDGEMENTS} acknowledgements")));
    }
    many.acknowledgements.iter().enumerate().map(|(i, ack)| acknowledge(&format!("{field}[{i}]"), ack)).collect()
}

fn acknowledge(field: &str, ack: &pb::Acknowledge) -> Result<Call, WireError> {
    Ok(Call::Acknowledge {
        agent_id: id(&format!("{field}.agent_id"), &ack.agent_id)?,
        task_id: id(&format!("{field}.task_id"), &ack.task_id)?,
        uuid: id(&format!("{field}.uuid"), &ack.uuid)?,
    })
}

/// The one mapping from the core's call errors to gRPC statuses. Unknown frameworks and
/// stale streams tell the SDK to subscribe again.
pub fn call_error_status(error: CallError) -> tonic::Status {
    match &error {
        CallError::UnknownFramework(_) => tonic::Status::not_found(error.to_string()),
        CallError::StaleStream(_) => tonic::Status::failed_precondition(error.to_string()),
        CallError::Invalid { .. } => tonic::Status::invalid_argument(error.to_string()),
        CallError::Forbidden(_) => tonic::Status::permission_denied(error.to_string()),
        CallError::Exhausted(_) => tonic::Status::resource_exhausted(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(task: &str, uuid: &str) -> pb::Acknowledge {
        pb::Acknowledge { agent_id: "a1".to_owned(), task_id: task.to_owned(), uuid: uuid.to_owned() }
    }

    fn many(acknowledgements: Vec<pb::Acknowledge>) -> pb::Call {
        let call = pb::call::Call::AcknowledgeMany(pb::AcknowledgeMany { acknowledgements });
        pb::Call { framework_id: "f".to_owned(), stream_id: "s".to_owned(), call: Some(call) }
    }

    #[test]
    fn acknowledge_many_is_one_acknowledge_call_per_entry_in_order() {
        let calls = calls_from_pb(many(vec![ack("t1", "u1"), ack("t2", "u2")])).expect("valid");
        let tasks: Vec<String> = calls
            .iter()
            .map(|call| match call {
                Call::Acknowledge { task_id, .. } => task_id.to_string(),
                other => panic!("not an acknowledgement: {other:?}"),
            })
            .collect();
        assert_eq!(tasks, ["t1", "t2"]);
    }

    #[test]
    fn acknowledge_many_names_the_bad_entry_and_is_bounded() {
        let error = calls_from_pb(many(vec![ack("t1", "u1"), ack("t2", "")])).expect_err("empty uuid");
        assert!(error.to_string().contains("acknowledge_many.acknowledgements[1].uuid"), "{error}");
        let error = calls_from_pb(many(Vec::new())).expect_err("empty");
        assert!(error.to_string().contains("acknowledge_many.acknowledgements"), "{error}");
        let too_many = (0..=MAX_ACKNOWLEDGEMENTS).map(|i| ack(&format!("t{i}"), "u")).collect();
        assert!(calls_from_pb(many(too_many)).is_err());
    }

    #[test]
    fn other_calls_stand_for_one_core_call() {
        let call = pb::Call {
            framework_id: "f".to_owned(),
            stream_id: "s".to_owned(),
            call: Some(pb::call::Call::Teardown(pb::Teardown {})),
        };
        assert_eq!(calls_from_pb(call).expect("valid"), vec![Call::Teardown]);
    }
}
