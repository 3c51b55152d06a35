//! Admission: what decides whether a new connection may wait for a hello at all. With
//! `--proxy-protocol` the balancer's header names the client first; then the allow and block
//! lists (a listed address is fronted, never reset) and the per-address cap apply.

use super::access_list::Verdict;
use super::connection::{Connection, Cx, Dial, FrontReason, Phase};
use super::counters::Refusal;
use super::end::End;
use super::net::{Net, Outcome};
use super::pipe::{self, Read, Step, Take};
use crate::proto::proxy_protocol::{self, Parse};

impl<S> Connection<S> {
    /// The client's address is known: apply the lists and the per-address cap, then wait for
    /// the hello with the front dialled at once.
    pub(super) fn admit<N: Net<Stream = S>>(
        &mut self,
        deadline: u64,
        cx: &mut Cx<'_, N>,
    ) -> Result<(), End> {
        if let Some(ip) = self.client_address.map(|a| a.ip()) {
            let refusal = match cx.env.shared.address_allowed(ip) {
                Verdict::Allowed => None,
                Verdict::Blocked => Some(Refusal::Blocked),
                Verdict::NotAllowed => Some(Refusal::NotAllowed),
            };
            if let Some(refusal) = refusal {
                cx.env.counters().refused(refusal);
                self.phase = Phase::AwaitHello {
                    deadline,
                    front: Dial::NEW,
                };
                return self.front(FrontReason::Listed, cx);
            }
            match cx.env.shared.per_ip.acquire(ip) {
                Some(slot) => self.address_slot = slot,
                None => {
                    cx.env.counters().refused(Refusal::PerIp);
                    self.drain_client(cx);
                    return Err(End::AddressLimit);
                }
            }
        }
        self.phase = Phase::AwaitHello {
            deadline,
            front: Dial::NEW,
        };
        // The hello may be queued already: the first run looks before the front is dialled.
        self.client.ready.readable = true;
        Ok(())
    }

    /// `--proxy-protocol`: peeks at the balancer's header, takes exactly its bytes and admits
    /// the client it names. Anything else closes: only the balancer connects here.
    pub(super) fn read_proxy_header<N: Net<Stream = S>>(
        &mut self,
        deadline: u64,
        cx: &mut Cx<'_, N>,
    ) -> Result<Step, End> {
        let scratch = &mut cx.env.scratch[..proxy_protocol::MAX_V2_LEN];
        let peeked = match pipe::read(&mut self.client, cx.net, scratch, Take::Peek)? {
            Read::Idle => return Ok(Step::Idle),
            Read::Closed => return Err(End::ClientLeft),
            Read::Bytes(n) => n,
        };
        let header = match proxy_protocol::parse(&cx.env.scratch[..peeked]) {
            Parse::Parsed(header) => header,
            Parse::NeedMore
                if peeked < proxy_protocol::MAX_V2_LEN && !self.client.ready.hung_up =>
            {
                return Ok(Step::Idle)
            }
            _ => return Err(End::BadProxyHeader),
        };
        let Some(stream) = self.client.stream.as_mut() else {
            return Err(End::Internal);
        };
        match cx.net.read(stream, &mut cx.env.scratch[..header.consumed]) {
            Outcome::Progress(n) if n == header.consumed => {}
            _ => return Err(End::Internal),
        }
        // A header from the balancer itself (a health check) stands for the balancer.
        if header.source.is_some() {
            self.client_address = header.source;
        }
        self.destination = header.destination;
        self.client.ready.readable = true;
        self.admit(deadline, cx).map(|()| Step::Progress)
    }
}
