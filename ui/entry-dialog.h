// One memory entry opened from the timeline: its key frames, time range, caption and transcript.
#pragma once

#include "memory/memory.h"

#include <QDialog>

namespace iris::ui {

class EntryDialog : public QDialog
{
    Q_OBJECT

public:
    EntryDialog(const memory::Entry& entry, QWidget* parent = nullptr);
};

} // namespace iris::ui
