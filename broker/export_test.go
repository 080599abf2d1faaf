package broker

// GoroutineJobs reports how many jobs the broker's goroutine pool ran
// for writers (writeLoop, writeRest) and for cleanups after an inline
// reader (taskEnd).
func (b *Broker) GoroutineJobs() (writers, ends uint64) {
	return b.gor.runs[taskWrite].Load() + b.gor.runs[taskWriteRest].Load(), b.gor.runs[taskEnd].Load()
}
