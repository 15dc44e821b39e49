-- Revenue per customer entity; cdp_traits imports it as the external trait
-- "ltv" (see README.md) when the post-hook runs cdp_traits.run_jobs().
select
    customer_entity_id,
    sum(cdp_traits.to_number(payload->>'amount')) as value
from {{ source('cdp_traits', 'customer_events') }}
where customer_entity_id is not null and type = 'purchase'
group by customer_entity_id
