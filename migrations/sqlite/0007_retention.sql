-- Housekeeping (retention). Events need nothing new: old ones are found in id order through
-- events_app_id, a channel's excess through events_app_channel_id.
-- The associations of a deleted event, found by its mid.
CREATE INDEX IF NOT EXISTS associations_app_mid ON associations (app_id, mid);
-- An app's finished deliveries past their age.
CREATE INDEX IF NOT EXISTS deliveries_app_status_updated ON deliveries (app_id, status, updated_ms);
