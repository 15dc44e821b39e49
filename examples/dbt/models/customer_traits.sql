-- One row per customer entity: traits computed with cdp_traits' aggregates.
select
    customer_entity_id,
    cdp_traits.most_frequent(payload->>'device') as top_device,
    cdp_traits.unique_list(source_id) as sources,
    cdp_traits.first(payload->>'channel', event_time) as first_channel,
    cdp_traits.last(payload->>'channel', event_time) as last_channel,
    count(*) as events
from {{ source('cdp_traits', 'customer_events') }}
where customer_entity_id is not null
group by customer_entity_id
