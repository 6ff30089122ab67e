//! The codec of every generated SKM client and server: prost encoding, with
//! a message that doesn't decode answered as INVALID_ARGUMENT (it is the
//! caller's bad input, DESIGN §10) instead of tonic-prost's INTERNAL.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};

/// `application/grpc+proto` through prost; decode failures are
/// INVALID_ARGUMENT "undecodable message: ...".
#[derive(Debug, Clone)]
pub struct SkmCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SkmCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for SkmCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = SkmDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        SkmDecoder(PhantomData)
    }
}

/// Decodes `U`; a malformed message is INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct SkmDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for SkmDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| Status::invalid_argument(format!("undecodable message: {e}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
