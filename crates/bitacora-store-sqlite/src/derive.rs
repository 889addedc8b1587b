//! The log position `pos` that clusters a tenant's events, and (re-exported from
//! [`bitacora_store::derive`]) the values every store derives from an event for its row.

pub use bitacora_store::derive::{
    actor_search, fts_text, ip_blob, ip_from_blob, ip_range, narrow_network,
};

/// Bits of `pos` that hold `seq`: 2^40 events per tenant, 2^23 tenants.
pub const SEQ_BITS: u32 = 40;
pub const SEQ_MASK: i64 = (1 << SEQ_BITS) - 1;

pub fn pos(tenant_id: i64, seq: u64) -> i64 {
    (tenant_id << SEQ_BITS) | (seq as i64 & SEQ_MASK)
}

pub fn seq_of(pos: i64) -> u64 {
    (pos & SEQ_MASK) as u64
}

/// The first and last `pos` of a tenant's log.
pub fn tenant_range(tenant_id: i64) -> (i64, i64) {
    (tenant_id << SEQ_BITS, (tenant_id << SEQ_BITS) | SEQ_MASK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pos_packs_tenant_and_seq() {
        let p = pos(3, 17);
        assert_eq!(seq_of(p), 17);
        let (lo, hi) = tenant_range(3);
        assert!(lo <= p && p <= hi);
        assert!(hi < tenant_range(4).0);
    }
}
