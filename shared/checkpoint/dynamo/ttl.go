package dynamo

// TTLAttribute is the state table's time-to-live attribute. An item that
// holds it as a number of Unix epoch seconds is deleted by DynamoDB some time
// (typically within days) after that moment. The deployed stack enables TTL
// on it; the local runner's table (EnsureTable) does not, which only means
// such items stay.
//
// Checkpoint and lease items never carry it: their lease_expires is in
// milliseconds and is not a TTL. Use it for items that may go, such as the
// progress of a finished initial load.
const TTLAttribute = "expires_at"
