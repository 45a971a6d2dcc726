-- How a dataset loads (protocol::DatasetOptions as JSON): the validation split of an
-- ImageFolder without one, and what to do with an unreadable image.
ALTER TABLE datasets ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
