//! The scheduler gRPC service: SUBSCRIBE opens a framework's event stream; every other
//! call is a unary request naming the framework and its stream. The stream id a framework
//! is given is a random token (`streams`), and with `--authenticate-frameworks` every
//! request carries the framework's credential in the `authorization` metadata.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use agora_proto::model::FrameworkInfo;
use agora_proto::pb;
use agora_proto::pb::scheduler_server::{Scheduler, SchedulerServer};
use futures::Stream;
use tokio::sync::watch;
use tonic::{Request as GrpcRequest, Response, Status};

use super::auth::{self, Kind, Security};
use super::owner::{Handle, Request};
use super::streams::{NOT_CURRENT, Streams, Subscription};
use super::wire;

pub fn server(
    handle: Handle,
    stop: watch::Receiver<bool>,
    security: Arc<Security>,
    streams: Streams,
) -> SchedulerServer<SchedulerService> {
    SchedulerServer::new(SchedulerService { handle, stop, security, streams })
}

#[derive(Debug)]
pub struct SchedulerService {
    handle: Handle,
    stop: watch::Receiver<bool>,
    security: Arc<Security>,
    streams: Streams,
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
        let principal = self
            .security
            .authenticate_grpc(Kind::Framework, request.metadata())
            .map_err(|r| auth::unauthenticated(&r))?;
        let framework =
            request.into_inner().framework.ok_or_else(|| Status::invalid_argument("framework: is required"))?;
        let mut info = FrameworkInfo::try_from(framework).map_err(|e| Status::from(e.in_field("framework")))?;
        self.security.admit_framework(&principal, &mut info).map_err(Status::permission_denied)?;
        let subscription = self
            .handle
            .ask(|reply| Request::Subscribe { info, reply })
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .map_err(wire::call_error_status)?;
        tracing::info!(framework_id = %subscription.framework_id, "framework subscribed");

        let token = self.streams.register(Subscription {
            framework_id: subscription.framework_id.clone(),
            stream_id: subscription.stream_id.clone(),
            principal,
        });
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
            let token = token;
            let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            loop {
                tokio::select! {
                    event = events.recv() => match event {
                        Some(event) => if let Some(mut event) = wire::event_to_pb(&event) {
                            // The framework knows its stream by the token, never by the
                            // core's sequential id.
                            if let Some(pb::event::Event::Subscribed(subscribed)) = &mut event.event {
                                subscribed.stream_id = token.token().to_owned();
                            }
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
        let principal = self
            .security
            .authenticate_grpc(Kind::Framework, request.metadata())
            .map_err(|r| auth::unauthenticated(&r))?;
        let mut call = request.into_inner();
        let (framework_id, token) = wire::call_target(&call)?;
        let subscription = self
            .streams
            .lookup(token.as_str(), &framework_id)
            .ok_or_else(|| Status::failed_precondition(NOT_CURRENT))?;
        if !auth::same_principal(&subscription.principal, &principal) {
            tracing::warn!(%framework_id, ?principal, "call refused: not the principal that subscribed");
            return Err(Status::permission_denied("the call is not from the principal that subscribed this framework"));
        }
        let stream_id = subscription.stream_id;
        call.stream_id = stream_id.to_string();
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
