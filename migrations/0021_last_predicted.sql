-- The class each sample was predicted at its run's last epoch, for the sample grid's cards
-- (issue 21 item 12). NULL for runs analysed before it was stored: their records still hold
-- every epoch's prediction, and the sample page reads them there.
ALTER TABLE sample_stats ADD COLUMN last_predicted INTEGER;
