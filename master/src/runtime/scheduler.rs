//! The scheduler gRPC service: SUBSCRIBE opens a framework's event stream; every other
//! call is a unary request naming the framework and its stream.

use std::pin::Pin;
use std::time::Duration;

use agora_proto::model::FrameworkInfo;
use agora_proto::pb;
use agora_proto::pb::scheduler_server::{Scheduler, SchedulerServer};
use futures::Stream;
use tokio::sync::watch;
use tonic::{Request as GrpcRequest, Response, Status};

use super::owner::{Handle, Request};
use super::wire;

pub fn server(handle: Handle, stop: watch::Receiver<bool>) -> SchedulerServer<SchedulerService> {
    SchedulerServer::new(SchedulerService { handle, stop })
}

#[derive(Debug)]
pub struct SchedulerService {
    handle: Handle,
    stop: watch::Receiver<bool>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

/// Tells the owner when a framework's stream goes away, however that happens (client
/// gone, master stopping, replaced by a newer subscription).
pub(super) struct Unsubscribe {
    handle: Handle,
    framework_id: agora_proto::model::FrameworkId,
    stream_id: agora_proto::model::StreamId,
}

impl Unsubscribe {
    pub(super) fn new(
        handle: Handle,
        framework_id: agora_proto::model::FrameworkId,
        stream_id: agora_proto::model::StreamId,
    ) -> Self {
        Self { handle, framework_id, stream_id }
    }
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        let request =
            Request::FrameworkGone { framework_id: self.framework_id.clone(), stream_id: self.stream_id.clone() };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = handle.send(request).await;
            });
        }
    }
}

#[tonic::async_trait]
impl Scheduler for SchedulerService {
    type SubscribeStream = EventStream;

    async fn subscribe(&self, request: GrpcRequest<pb::Subscribe>) -> Result<Response<EventStream>, Status> {
        let framework =
            request.into_inner().framework.ok_or_else(|| Status::invalid_argument("framework: is required"))?;
        let info = FrameworkInfo::try_from(framework).map_err(|e| Status::from(e.in_field("framework")))?;
        let subscription = self
            .handle
            .ask(|reply| Request::Subscribe { info, reply })
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .map_err(wire::call_error_status)?;
        tracing::info!(framework_id = %subscription.framework_id, "framework subscribed");

        let guard = Unsubscribe {
            handle: self.handle.clone(),
            framework_id: subscription.framework_id.clone(),
            stream_id: subscription.stream_id.clone(),
        };
        let mut events = subscription.events;
        let mut stop = self.stop.clone();
        let interval = Duration::from_millis(subscription.heartbeat_interval_ms.max(100));
        let stream = async_stream::stream! {
            let _guard = guard;
            let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            loop {
                tokio::select! {
                    event = events.recv() => match event {
                        Some(event) => if let Some(event) = wire::event_to_pb(&event) {
                            yield Ok(event);
                        },
                        None => break,
                    },
                    _ = heartbeat.tick() => yield Ok(wire::heartbeat_event()),
                    _ = super::stopped(&mut stop) => break,
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn call(&self, request: GrpcRequest<pb::Call>) -> Result<Response<pb::CallResponse>, Status> {
        let call = request.into_inner();
        let (framework_id, stream_id) = wire::call_target(&call)?;
        let calls = wire::calls_from_pb(call)?;
        // One request however many calls an ACKNOWLEDGE_MANY holds: they are applied in
        // one turn of the owner, and the first error is the answer.
        self.handle
            .ask(|reply| Request::Calls { framework_id, stream_id, calls, reply })
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .map_err(wire::call_error_status)?;
        Ok(Response::new(pb::CallResponse {}))
    }
}
