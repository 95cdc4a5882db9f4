//! The gRPC codec of every Agora service and client: prost encoding, with small buffers.
//!
//! tonic's default codec gives every stream an 8 KiB encode and an 8 KiB decode buffer up
//! front. A master holds one long-lived stream per agent, and agents send small messages
//! (heartbeats, status updates), so at 50,000 agents those buffers alone were about
//! 800 MiB. These start at 512 bytes and grow as a message needs.
//!
//! A message that does not decode is the sender's fault: it is answered
//! `INVALID_ARGUMENT` (prost's decoder says `INTERNAL`, which reads as the server's).

use std::marker::PhantomData;

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstCodec;

/// Initial size of a stream's encode and decode buffers.
const BUFFER_BYTES: usize = 512;
/// Encoded bytes a streaming response gathers before it yields to the transport (tonic's
/// default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`ProstCodec`] with [`BUFFER_BYTES`] buffers.
#[derive(Debug, Clone, Copy)]
pub struct LeanCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = InvalidArgumentDecoder<<ProstCodec<T, U> as Codec>::Decoder>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        InvalidArgumentDecoder(ProstCodec::<T, U>::raw_decoder(BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD)))
    }
}

/// A decoder whose failures are `INVALID_ARGUMENT`, naming what did not decode.
#[derive(Debug, Clone)]
pub struct InvalidArgumentDecoder<D>(D);

impl<D: Decoder<Error = Status>> Decoder for InvalidArgumentDecoder<D> {
    type Item = D::Item;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        self.0.decode(src).map_err(|status| match status.code() {
            tonic::Code::Internal => Status::invalid_argument(format!("malformed message: {}", status.message())),
            _ => status,
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
