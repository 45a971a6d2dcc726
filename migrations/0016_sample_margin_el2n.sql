-- Two more per-sample scores (issue 17): the mean margin over the statistics' epoch window
-- (Pleiss et al. 2020's area under the margin, per epoch) and EL2N at the run's EL2N epoch
-- (Paul et al. 2021). NULL for runs analysed before they existed.
ALTER TABLE sample_stats ADD COLUMN mean_margin REAL;
ALTER TABLE sample_stats ADD COLUMN el2n REAL;
